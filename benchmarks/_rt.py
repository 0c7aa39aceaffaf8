"""Access to the runtime under test, and whether each part of it exists yet."""

from __future__ import annotations

import importlib

__all__ = ["runtime_missing"]

#: feature -> (module, attribute) that must import
_FEATURES = {
    "filestore": ("runtime.stores.files", "FileStore"),
    "memorystore": ("runtime.stores.memory", "MemoryStore"),
    "broker": ("runtime.brokers.memory", "MemoryBroker"),
    "runtime": ("runtime", "Runtime"),
    "asgi": ("runtime.asgi", "create_app"),
}


def runtime_missing(feature: str) -> str | None:
    """``None`` if the runtime's ``feature`` can be used, else a short reason.

    :raises KeyError: for an unknown feature name.
    """
    module, attr = _FEATURES[feature]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return f"not available ({module}: {exc})"
    if not hasattr(mod, attr):
        return f"not available ({module}.{attr} missing)"
    return None
