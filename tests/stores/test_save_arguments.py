"""The arguments of ``Store.save``: ``SaveDelta`` and ``SaveRequest`` (their constructors
check their arguments, a ``SaveDelta``'s naming the value and the rule, and build frozen
values that compare, hash and ``dataclasses.replace`` like any frozen dataclass), and the
session id, checked on every save although a store remembers the ids it checked."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest

from runtime import InvalidSessionId, SaveDelta, Session
from runtime.stores.abc import DELTA_FIELDS, Lease, SaveRequest, Store
from runtime.stores.files import FileStore
from runtime.stores.memory import MemoryStore


class _Count(int):
    """An int subclass (numpy's and others' integer types are ints too)."""


def test_a_delta_holds_what_it_was_given() -> None:
    delta = SaveDelta(5, 4, frozenset({"title"}))
    assert (delta.base, delta.keep, delta.fields) == (5, 4, frozenset({"title"}))
    assert SaveDelta(3, 3) == SaveDelta.appended(3) == SaveDelta(base=3, keep=3)
    assert SaveDelta.appended(3).fields == frozenset()
    assert SaveDelta.appended(3, ["title", "metadata"]).fields == {"title", "metadata"}
    assert SaveDelta(0, 0, frozenset(DELTA_FIELDS)).fields == DELTA_FIELDS
    assert SaveDelta(_Count(2), _Count(1)).base == 2  # int subclasses other than bool
    assert hash(SaveDelta(2, 1)) == hash(SaveDelta(2, 1))
    assert SaveDelta(2, 1) != SaveDelta(2, 2)
    assert repr(SaveDelta(2, 1)) == "SaveDelta(base=2, keep=1, fields=frozenset())"
    assert dataclasses.replace(SaveDelta(2, 1), keep=2) == SaveDelta(2, 2)
    assert pickle.loads(pickle.dumps(SaveDelta(4, 3, frozenset({"title"})))) == SaveDelta(
        4, 3, frozenset({"title"})
    )


def test_a_delta_is_frozen() -> None:
    delta = SaveDelta(2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delta.base = 3  # type: ignore[misc]
    assert delta == SaveDelta(2, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((True, 0), "invalid SaveDelta base True: must be an int >= 0"),
        ((-1, 0), "invalid SaveDelta base -1: must be an int >= 0"),
        (("3", 0), "invalid SaveDelta base '3': must be an int >= 0"),
        ((3.0, 0), "invalid SaveDelta base 3.0: must be an int >= 0"),
        ((3, False), "invalid SaveDelta keep False: must be an int >= 0"),
        ((3, -2), "invalid SaveDelta keep -2: must be an int >= 0"),
        ((3, 4), "invalid SaveDelta keep 4: must not exceed base 3"),
        ((3, 3, {"title"}), "invalid SaveDelta fields {'title'}: must be a frozenset"),
        ((3, 3, frozenset({"title", "nope"})), "invalid SaveDelta fields ['nope']: must be among"),
        ((3, 3, frozenset({"session_id"})), "invalid SaveDelta fields ['session_id']"),
        ((3, 3, frozenset({"updated_at"})), "invalid SaveDelta fields ['updated_at']"),
    ],
)
def test_a_bad_delta_is_refused_naming_the_value_and_the_rule(
    args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        SaveDelta(*args)  # type: ignore[arg-type]


def test_appended_refuses_an_unknown_field() -> None:
    with pytest.raises(ValueError, match=r"invalid SaveDelta fields \['colour'\]"):
        SaveDelta.appended(1, ["colour"])


def test_a_save_request_is_a_frozen_value() -> None:
    lease = Lease("node", "token", 30.0)
    request = SaveRequest(True, False, (), lease, "renew", SaveDelta(1, 1))
    assert (request.skip_index, request.touch_updated_at, request.events) == (True, False, ())
    assert (request.lease, request.lease_mode, request.delta) == (lease, "renew", SaveDelta(1, 1))
    assert request.discard_backup is False
    assert request == SaveRequest(
        skip_index=True,
        touch_updated_at=False,
        events=(),
        lease=lease,
        lease_mode="renew",
        delta=SaveDelta(1, 1),
    )
    replaced = dataclasses.replace(request, delta=None, discard_backup=True)
    assert (replaced.delta, replaced.discard_backup, replaced.lease) == (None, True, lease)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.delta = None  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["memory", "files"])
async def test_a_saved_session_given_a_bad_id_is_refused(kind: str, tmp_path: Path) -> None:
    """A session saved (its id checked and remembered), then given a bad id (and, on
    FileStore, one it reserves): each save raises InvalidSessionId naming the value and
    writes nothing."""
    store: Store = MemoryStore() if kind == "memory" else FileStore(tmp_path)
    async with store:
        s = Session("good-1", messages=[{"role": "user", "content": "q"}])
        await store.save(s)
        await store.save(s)
        reserved = ["_index"] if kind == "files" else []
        for bad in ["../x", "a b", "", ["good-1"], 5, *reserved]:
            s.session_id = bad  # type: ignore[assignment]
            with pytest.raises(InvalidSessionId, match=re.escape(repr(bad))):
                await store.save(s)
        s.session_id = "good-1"
        await store.save(s)
        assert [x.session_id for x in (await store.list_sessions()).sessions] == ["good-1"]
