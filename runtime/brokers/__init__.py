"""Event logs with replay and fan-out behind one ABC (:class:`Broker`,
:class:`StreamLog`); :class:`MemoryBroker` is the in-process default."""

from __future__ import annotations

from .abc import Broker as Broker
from .abc import StreamLog as StreamLog
from .memory import EventLog as EventLog
from .memory import MemoryBroker as MemoryBroker

__all__ = ["Broker", "EventLog", "MemoryBroker", "StreamLog"]
