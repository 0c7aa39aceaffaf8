"""Sizes and repetitions of a full run and of ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Config", "Context"]


@dataclass(frozen=True)
class Config:
    """Every knob of a run. ``Config.full()`` is what BENCHMARKS.md specifies."""

    quick: bool
    #: W1-W3 history sizes N.
    sizes: tuple[int, ...]
    #: W1-W3 interleaved passes: in each, every system (and the floors) in turn.
    passes: int
    #: timed appends per (system, N) and pass in W1/W2, after ``warmup`` untimed ones.
    append_reps: int
    warmup: int
    #: LangGraph's appends per pass are capped at large N (each rewrites the history).
    langgraph_reps_cap: dict[int, int]
    #: timed full loads per (system, N) and pass in W3.
    load_reps: int
    #: timed full loads per (system, N) and pass in WPG W3, each after its own floor
    #: SELECT: odd, so a pass's median is a sample, not the mean of two.
    pg_load_reps: int
    #: repetitions of the 1-byte write+fsync floor per N and pass.
    floor_reps: int
    #: W4 events per pass, passes per system, producer yields every N events.
    w4_events: int
    w4_passes: int
    w4_yield_every: int
    #: W5 subscribers, events, and the agent's pace: a burst of events every interval.
    w5_subscribers: int
    w5_events: int
    w5_burst: int
    w5_burst_interval: float
    #: W6 concurrent turns, tokens per turn, seconds between tokens.
    w6_turns: int
    w6_tokens: int
    w6_token_interval: float
    #: W7/W8 store sizes S, and timed repetitions.
    store_sizes: tuple[int, ...]
    list_reps: int
    recover_reps: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            sizes=(100, 1_000, 10_000, 50_000),
            passes=5,
            append_reps=8,
            warmup=2,
            langgraph_reps_cap={10_000: 6, 50_000: 1},
            load_reps=2,
            pg_load_reps=5,
            floor_reps=60,
            w4_events=200_000,
            w4_passes=5,
            w4_yield_every=100,
            w5_subscribers=1_000,
            w5_events=10_000,
            w5_burst=20,
            w5_burst_interval=0.1,
            w6_turns=10_000,
            w6_tokens=20,
            w6_token_interval=0.25,
            store_sizes=(1_000, 100_000),
            list_reps=10,
            recover_reps=3,
        )

    @classmethod
    def quick_run(cls) -> Config:
        return cls(
            quick=True,
            sizes=(100, 1_000),
            passes=2,
            append_reps=5,
            warmup=1,
            langgraph_reps_cap={100: 3, 1_000: 3},
            load_reps=2,
            pg_load_reps=3,
            floor_reps=30,
            w4_events=50_000,
            w4_passes=2,
            w4_yield_every=100,
            w5_subscribers=50,
            w5_events=500,
            w5_burst=20,
            w5_burst_interval=0.1,
            w6_turns=300,
            w6_tokens=10,
            w6_token_interval=0.1,
            store_sizes=(1_000,),
            list_reps=3,
            recover_reps=1,
        )

    def langgraph_reps(self, n: int) -> int:
        """Timed LangGraph appends per pass at history size ``n``."""
        return min(self.append_reps, self.langgraph_reps_cap.get(n, self.append_reps))


@dataclass
class Context:
    """Shared state of one run: the config, the temp dir, results cached across workloads."""

    config: Config
    tmp: Path
    cache: dict[str, object]
