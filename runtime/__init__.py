"""runtime: an asynchronous streaming-agent runtime.

Runs each agent turn as a task, streams its events to subscribers that may
disconnect and resume, and persists every session durably while the agent works.
Optional parts (HTTP server, terminal UI) live behind extras and are not imported here.
"""

from __future__ import annotations

from ._events import Event as Event
from ._events import EventType as EventType
from ._events import Outcome as Outcome
from ._exceptions import AgentLoadError as AgentLoadError
from ._exceptions import CorruptSession as CorruptSession
from ._exceptions import EmptyOverwriteRefused as EmptyOverwriteRefused
from ._exceptions import Error as Error
from ._exceptions import EventLogUnavailable as EventLogUnavailable
from ._exceptions import HistoryMismatch as HistoryMismatch
from ._exceptions import InvalidCursor as InvalidCursor
from ._exceptions import InvalidSessionId as InvalidSessionId
from ._exceptions import LeaseLost as LeaseLost
from ._exceptions import MetadataOnlyError as MetadataOnlyError
from ._exceptions import MetadataOnlySaveError as MetadataOnlySaveError
from ._exceptions import NothingToResume as NothingToResume
from ._exceptions import SessionBusy as SessionBusy
from ._exceptions import SessionNotFound as SessionNotFound
from ._exceptions import StoreClosed as StoreClosed
from ._exceptions import StoreError as StoreError
from ._exceptions import StoreLocked as StoreLocked
from ._exceptions import StreamNotFound as StreamNotFound
from ._exceptions import SubscriberLagged as SubscriberLagged
from ._exceptions import ToolCallNotFound as ToolCallNotFound
from ._exceptions import WriteConflict as WriteConflict
from ._resume import OUTCOME_UNKNOWN as OUTCOME_UNKNOWN
from ._resume import outcome_unknown as outcome_unknown
from ._runner import Agent as Agent
from ._runner import ToolCall as ToolCall
from ._runner import Turn as Turn
from ._runtime import Runtime as Runtime
from ._session import Message as Message
from ._session import Session as Session
from ._tools import Tool as Tool
from ._transcript import model_messages as model_messages
from .stores.abc import RecoveryReport as RecoveryReport
from .stores.abc import SaveDelta as SaveDelta
from .stores.abc import SessionPage as SessionPage
from .stores.abc import Store as Store
from .stores.abc import ToolCallRecord as ToolCallRecord
from .stores.files import FileStore as FileStore
from .stores.memory import MemoryStore as MemoryStore

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentLoadError",
    "CorruptSession",
    "EmptyOverwriteRefused",
    "Error",
    "Event",
    "EventLogUnavailable",
    "EventType",
    "FileStore",
    "HistoryMismatch",
    "InvalidCursor",
    "InvalidSessionId",
    "LeaseLost",
    "MemoryStore",
    "Message",
    "MetadataOnlyError",
    "MetadataOnlySaveError",
    "NothingToResume",
    "OUTCOME_UNKNOWN",
    "Outcome",
    "RecoveryReport",
    "Runtime",
    "SaveDelta",
    "Session",
    "SessionBusy",
    "SessionNotFound",
    "SessionPage",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreLocked",
    "StreamNotFound",
    "SubscriberLagged",
    "Tool",
    "ToolCall",
    "ToolCallNotFound",
    "ToolCallRecord",
    "Turn",
    "WriteConflict",
    "model_messages",
    "outcome_unknown",
]
