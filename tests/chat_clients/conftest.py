"""The chat client tests use tests/http's helpers (``sse_helpers``: the uvicorn server
process), whichever of their modules is collected first or alone."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "http"))
