"""Event logs with replay and fan-out. :class:`MemoryBroker` is the in-process default."""

from __future__ import annotations

from .memory import EventLog as EventLog
from .memory import MemoryBroker as MemoryBroker

__all__ = ["EventLog", "MemoryBroker"]
