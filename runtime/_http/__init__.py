"""Private parts of :mod:`runtime.asgi`, the HTTP/SSE edge. Import ``runtime.asgi``."""
