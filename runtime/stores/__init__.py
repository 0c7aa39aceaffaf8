"""Persistence backends behind one ABC (:class:`~runtime.stores.abc.Store`).

Backends are imported lazily so that optional drivers load only when used.
"""

from __future__ import annotations

from .abc import RecoveryReport as RecoveryReport
from .abc import SaveDelta as SaveDelta
from .abc import SessionPage as SessionPage
from .abc import Store as Store
from .abc import ToolCallRecord as ToolCallRecord
from .files import FileStore as FileStore
from .memory import MemoryStore as MemoryStore

__all__ = [
    "FileStore",
    "MemoryStore",
    "RecoveryReport",
    "SaveDelta",
    "SessionPage",
    "Store",
    "ToolCallRecord",
]
