"""The Session model (runtime/_session.py): defaults, JSON round trip, the id rule,
metadata-only semantics, is_empty_untitled, copy()."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime._exceptions import InvalidSessionId, MetadataOnlyError
from runtime._session import META_FIELDS, Session, new_session_id, validate_session_id

# -- defaults -----------------------------------------------------------------------


def test_defaults() -> None:
    before = time.time()
    s = Session()
    after = time.time()
    assert re.fullmatch(r"[0-9a-f]{32}", s.session_id)
    assert uuid.UUID(hex=s.session_id).version == 4
    assert s.title == "Untitled"
    assert s.model is None
    assert s.model_provider is None
    assert s.workspace is None
    assert before <= s.created_at <= after
    assert s.updated_at == s.created_at
    assert s.messages == []
    assert s.message_count == 0
    assert s.metadata == {}
    assert s.active_stream_id is None
    assert s.pending_user_message is None
    assert s.pending_started_at is None
    assert not s.metadata_only
    assert not s.is_streaming


def test_defaults_are_not_shared_between_sessions() -> None:
    a, b = Session(), Session()
    assert a.session_id != b.session_id
    a.messages.append({"role": "user", "content": "x"})
    a.metadata["k"] = 1
    assert b.messages == []
    assert b.metadata == {}


def test_new_session_id_is_uuid4_hex() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(hex=i).version == 4 and i == uuid.UUID(hex=i).hex for i in ids)


def test_updated_at_defaults_to_given_created_at() -> None:
    s = Session(created_at=100.0)
    assert s.created_at == 100.0
    assert s.updated_at == 100.0
    assert Session(created_at=100.0, updated_at=200.0).updated_at == 200.0


# -- JSON round trip ----------------------------------------------------------------


def _full_session() -> Session:
    return Session(
        "full-1",
        title="Ünïcødé 🚀",
        model="gpt-x",
        model_provider="openai",
        workspace="/tmp/ws",
        created_at=1_700_000_000.125,
        updated_at=1_700_000_001.5,
        messages=[
            {"role": "user", "content": "hi", "timestamp": 1.5},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "ok"},
            {"role": "assistant", "content": "x", "_error": True, "type": "interrupted"},
        ],
        active_stream_id="st",
        pending_user_message="next",
        pending_started_at=1_700_000_002.0,
        metadata={"a": [1, {"b": None}]},
    )


def test_to_dict_has_every_field() -> None:
    d = _full_session().to_dict()
    assert set(d) == {*META_FIELDS, "messages", "message_count"}
    assert d["message_count"] == 4


def test_json_round_trip_via_orjson() -> None:
    s = _full_session()
    data = orjson.loads(orjson.dumps(s.to_dict()))
    back = Session.from_dict(data)
    assert back.to_dict() == s.to_dict()
    assert not back.metadata_only


def test_from_dict_fills_defaults_for_missing_fields() -> None:
    s = Session.from_dict({"session_id": "abc", "created_at": 5.0})
    assert s.title == "Untitled"
    assert s.messages == []
    assert s.metadata == {}
    assert s.updated_at == 5.0


def test_from_dict_without_session_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        Session.from_dict({"title": "x"})


def test_from_dict_refuses_a_bad_id() -> None:
    with pytest.raises(InvalidSessionId, match=re.escape("'../etc'")):
        Session.from_dict({"session_id": "../etc"})


# -- the id rule ----------------------------------------------------------------------

VALID_IDS = ["a", "Z", "0", "-", "_", "a" * 64, "abc-DEF_123", uuid.uuid4().hex]
INVALID_IDS: list[object] = [
    "",
    "a" * 65,
    "../x",
    "x/y",
    "x\\y",
    "a b",
    "abc\n",
    "\nabc",
    "a.b",
    ".",
    "é",
    "\uff41",  # fullwidth a
    "a\x00",
    None,
    5,
    b"abc",
    ["a"],
]


@pytest.mark.parametrize("sid", VALID_IDS)
def test_valid_ids(sid: str) -> None:
    assert validate_session_id(sid) == sid
    assert Session(sid).session_id == sid


@pytest.mark.parametrize("sid", INVALID_IDS, ids=repr)
def test_invalid_ids_are_refused_naming_value_and_rule(sid: object) -> None:
    with pytest.raises(InvalidSessionId) as info:
        validate_session_id(sid)
    assert isinstance(info.value, ValueError)
    assert repr(sid) in str(info.value)
    assert "[A-Za-z0-9_-]{1,64}" in str(info.value)
    if sid is not None:  # None means "make a fresh id"
        with pytest.raises(InvalidSessionId):
            Session(sid)  # type: ignore[arg-type]


# -- metadata-only ----------------------------------------------------------------


def test_metadata_only_from_meta_dict() -> None:
    s = _full_session()
    meta = Session.from_dict(s.meta_dict(), metadata_only=True)
    assert meta.metadata_only
    assert meta.message_count == 4
    assert meta.meta_dict() == s.meta_dict()
    assert "metadata_only" in repr(meta)


def test_metadata_only_counts_messages_when_count_missing() -> None:
    data = _full_session().to_dict()
    del data["message_count"]
    meta = Session.from_dict(data, metadata_only=True)
    assert meta.message_count == 4
    assert meta.metadata_only


def test_metadata_only_refuses_message_access() -> None:
    meta = Session.from_dict(_full_session().meta_dict(), metadata_only=True)
    with pytest.raises(MetadataOnlyError, match="full-1"):
        _ = meta.messages
    with pytest.raises(MetadataOnlyError):
        meta.messages = []
    with pytest.raises(MetadataOnlyError):
        meta.to_dict()
    assert isinstance(MetadataOnlyError("x"), RuntimeError)


def test_metadata_only_keeps_streaming_state() -> None:
    meta = Session.from_dict(_full_session().meta_dict(), metadata_only=True)
    assert meta.is_streaming
    assert meta.pending_user_message == "next"
    assert not meta.is_empty_untitled


# -- is_empty_untitled ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"title": "Named"}, False),
        ({"messages": [{"role": "user", "content": "x"}]}, False),
        ({"active_stream_id": "s"}, False),
        ({"pending_user_message": "q"}, False),
        ({"pending_user_message": ""}, False),
        ({"title": "untitled"}, False),
        ({"metadata": {"k": "v"}, "model": "m"}, True),
    ],
)
def test_is_empty_untitled(fields: dict[str, Any], expected: bool) -> None:
    s = Session(**fields)
    assert s.is_empty_untitled is expected
    meta = Session.from_dict(s.meta_dict(), metadata_only=True)
    assert meta.is_empty_untitled is expected


# -- copy -------------------------------------------------------------------------


def test_copy_has_its_own_list_and_metadata() -> None:
    s = _full_session()
    c = s.copy()
    assert c is not s
    assert c.to_dict() == s.to_dict()
    c.messages.append({"role": "user", "content": "only in the copy"})
    c.metadata["new"] = True
    c.title = "copy"
    assert s.message_count == 4
    assert "new" not in s.metadata
    assert s.title == "Ünïcødé 🚀"


def test_copy_shares_message_dicts() -> None:
    """Documented: the list is new, the dicts in it are not."""
    s = _full_session()
    c = s.copy()
    assert c.messages[0] is s.messages[0]


def test_copy_of_metadata_only_stays_metadata_only() -> None:
    meta = Session.from_dict(_full_session().meta_dict(), metadata_only=True)
    c = meta.copy()
    assert c.metadata_only
    assert c.message_count == 4


# -- properties -----------------------------------------------------------------------

_valid_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": _text},
        optional={
            "tool_call_id": _text,
            "name": _text,
            "timestamp": st.floats(min_value=0, max_value=4e9),
            "_error": st.booleans(),
            "_partial": st.booleans(),
            "extra": _json,
        },
    ),
    max_size=8,
)


@given(_valid_ids)
def test_any_valid_id_round_trips(sid: str) -> None:
    s = Session(sid)
    assert validate_session_id(sid) == sid
    assert Session.from_dict(orjson.loads(orjson.dumps(s.to_dict()))).session_id == sid


@given(st.text(max_size=70).filter(lambda t: re.fullmatch(r"[A-Za-z0-9_-]{1,64}", t) is None))
def test_any_other_text_is_refused(sid: str) -> None:
    with pytest.raises(InvalidSessionId):
        validate_session_id(sid)


@given(_messages, st.dictionaries(_text, _json, max_size=4), _text)
def test_random_sessions_round_trip_through_json(
    messages: list[dict[str, Any]], metadata: dict[str, Any], title: str
) -> None:
    s = Session(title=title, messages=messages, metadata=metadata)
    data = orjson.loads(orjson.dumps(s.to_dict()))
    back = Session.from_dict(data)
    assert back.to_dict() == s.to_dict()
    meta = Session.from_dict(orjson.loads(orjson.dumps(s.meta_dict())), metadata_only=True)
    assert meta.message_count == len(messages)
    assert meta.meta_dict() == s.meta_dict()
