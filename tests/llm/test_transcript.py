"""``runtime.model_messages``: stored transcripts (markers, partial output, recovered
prompts, unpaired calls) become messages the Chat Completions API accepts, checked by the
stand-in server's strict validator."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from chat_standin import Invalid, validate_messages
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import model_messages


def call(cid: str, name: str = "t") -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}}


STORED: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief.", "timestamp": 0.5},
    {"role": "user", "content": "q1", "timestamp": 1.0},
    {"role": "assistant", "content": "Half an ans", "_partial": True, "timestamp": 2.0},
    {
        "role": "assistant",
        "content": "Turn cancelled.",
        "type": "cancelled",
        "_cancelled": True,
        "timestamp": 3.0,
    },
    {"role": "user", "content": "q2", "_recovered": True, "timestamp": 4.0},
    {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")], "timestamp": 5},
    {"role": "tool", "tool_call_id": "a", "name": "t", "content": "ra", "timestamp": 6.0},
    {
        "role": "assistant",
        "content": "The previous turn was interrupted because the process stopped.",
        "_error": True,
        "type": "interrupted",
        "interruption_cause": "process_restart",
        "stream_id": "x.y",
        "timestamp": 7.0,
    },
    {"role": "user", "content": "q3", "timestamp": 8.0},
    {"role": "tool", "tool_call_id": "zzz", "content": "orphan", "timestamp": 9.0},
    {
        "role": "assistant",
        "content": "Error: ValueError: bad",
        "_error": True,
        "type": "error",
        "error_type": "ValueError",
        "timestamp": 10.0,
    },
]


def test_the_stored_transcript_is_refused_by_the_api_as_it_is() -> None:
    with pytest.raises(Invalid, match="'timestamp' was unexpected"):
        validate_messages(STORED)


def test_model_messages_renders_markers_partial_output_and_pairs_calls() -> None:
    before = copy.deepcopy(STORED)
    out = model_messages(STORED)
    assert before == STORED  # the input is untouched
    validate_messages(out)
    assert out == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q1"},
        {
            "role": "assistant",
            "content": "Half an ans\n\n[This answer was cut off before it was finished.]"
            "\n\n[The user cancelled this turn.]",
        },
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "ra"},
        {
            "role": "tool",
            "tool_call_id": "b",
            "content": "[No result: the tool call did not complete.]",
        },
        {
            "role": "assistant",
            "content": "[This turn was interrupted because the process running it stopped.]",
        },
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "[This turn failed with an error: ValueError: bad]"},
    ]


def test_tool_results_out_of_order_in_storage_are_sent_in_call_order() -> None:
    stored = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "b", "content": "rb"},
        {"role": "tool", "tool_call_id": "a", "content": "ra"},
    ]
    out = model_messages(stored)
    validate_messages(out)
    assert [m.get("tool_call_id") for m in out[2:]] == ["a", "b"]


def test_empty_assistant_messages_and_unknown_roles_are_left_out() -> None:
    out = model_messages(
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": ""},
            {"role": "function", "name": "f", "content": "old API"},
            {"role": "assistant", "content": "hello", "name": "bot", "timestamp": 1},
        ]
    )
    assert out == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "name": "bot"},
    ]


_PRIVATE = st.dictionaries(
    st.sampled_from(["timestamp", "_partial", "_error", "_recovered", "type", "stream_id"]),
    st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=5)),
    max_size=3,
)
_TEXT = st.text(max_size=20)


@st.composite
def _turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A stored transcript as crashes, cancels and tool loops can leave it."""
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["user", "text", "partial", "marker", "calls", "orphan"]))
        extra = draw(_PRIVATE)
        if kind == "user":
            out.append({**extra, "role": "user", "content": draw(_TEXT)})
        elif kind == "text":
            out.append({**extra, "role": "assistant", "content": draw(st.none() | _TEXT)})
        elif kind == "partial":
            out.append({"role": "assistant", "content": draw(_TEXT), "_partial": True})
        elif kind == "marker":
            marker = draw(st.sampled_from(["cancelled", "error", "interrupted"]))
            out.append({"role": "assistant", "content": draw(_TEXT), "type": marker})
        elif kind == "calls":
            ids = draw(
                st.lists(
                    st.text("abc", min_size=1, max_size=3), min_size=1, max_size=4, unique=True
                )
            )
            out.append(
                {
                    **extra,
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call(i) for i in ids],
                }
            )
            answered = draw(st.permutations(ids))[: draw(st.integers(0, len(ids)))]
            out += [
                {"role": "tool", "tool_call_id": i, "name": "t", "content": "r"} for i in answered
            ]
        else:
            out.append({"role": "tool", "tool_call_id": draw(_TEXT), "content": "x"})
    return out


@settings(max_examples=300, deadline=None)
@given(_turns())
def test_any_stored_transcript_renders_to_messages_the_api_accepts(
    stored: list[dict[str, Any]],
) -> None:
    out = model_messages(stored)
    if out:
        validate_messages(out)
    for m in out:
        assert not any(k.startswith("_") or k in ("timestamp", "type") for k in m)
