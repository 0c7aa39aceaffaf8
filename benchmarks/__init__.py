"""The benchmark suite of ``runtime``: workloads W1-W8 of BENCHMARKS.md, run on the
runtime and on its peers side by side in one process and one run.

Run it as ``python -m benchmarks [--quick] [--only W1,W4] [--json PATH]``; see
docs/benchmarks.md. :func:`main` is the entry point.
"""

from __future__ import annotations

from ._main import WORKLOADS, main

__all__ = ["WORKLOADS", "main"]
