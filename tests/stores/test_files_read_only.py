"""``FileStore(root, read_only=True)``: reading a root another process owns (its lock
held), with nothing created or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import FileStore, StoreError


async def _fill(root: Path) -> None:
    async with FileStore(root) as store:
        session = store.new_session(session_id="kept", title="Kept")
        session.messages.append({"role": "user", "content": "hi"})
        await store.save(session)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_reads_beside_the_owner_and_writes_nothing(tmp_path: Path) -> None:
    await _fill(tmp_path)
    async with FileStore(tmp_path) as owner:  # holds the lock
        before = _tree(tmp_path)
        async with FileStore(tmp_path, read_only=True) as reader:
            assert reader.exclusive is False
            page = await reader.list_sessions()
            assert [s.session_id for s in page.sessions] == ["kept"]
            loaded = await reader.load("kept")
            assert loaded.messages[0]["content"] == "hi"
            with pytest.raises(StoreError, match="opened read-only"):
                await reader.save(loaded)
            with pytest.raises(StoreError, match="opened read-only"):
                await reader.delete("kept")
            with pytest.raises(StoreError, match="opened read-only"):
                await reader.recover()
        assert _tree(tmp_path) == before
        assert (await owner.load("kept")).title == "Kept"


async def test_sees_what_the_owner_saved_after_it_opened(tmp_path: Path) -> None:
    await _fill(tmp_path)
    async with FileStore(tmp_path) as owner, FileStore(tmp_path, read_only=True) as reader:
        session = await owner.load("kept")
        session.messages.append({"role": "assistant", "content": "hello"})
        await owner.save(session)
        assert [m["content"] for m in (await reader.load("kept")).messages] == ["hi", "hello"]


async def test_a_missing_root_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    root = tmp_path / "nothing-here"
    with pytest.raises(StoreError, match="no FileStore at"):
        async with FileStore(root, read_only=True):
            pass
    assert not root.exists()


async def test_a_corrupt_index_is_rebuilt_in_memory_only(tmp_path: Path) -> None:
    await _fill(tmp_path)
    index = tmp_path / "sessions" / "_index.jsonl"
    index.write_bytes(b"{not json\n{also not\n")
    async with FileStore(tmp_path, read_only=True) as reader:
        page = await reader.list_sessions()
        assert [s.session_id for s in page.sessions] == ["kept"]
    assert index.read_bytes() == b"{not json\n{also not\n"
