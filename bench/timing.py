"""What every benchmark here shares: time a callable in rounds, report per-call figures.

Benchmarks print ratios against a baseline measured in the same run (the machines are
noisy); the median over rounds is the figure, the best round is shown where it helps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def missed(value: float, target: float, *, at_least: bool = False) -> str:
    """What to print beside a figure: ``"  MISSED"`` when ``value`` misses ``target`` (a
    ceiling, or with ``at_least`` a floor), else nothing."""
    met = value >= target if at_least else value <= target
    return "" if met else "  MISSED"


def rounds(function: Callable[[], object], count: int = 21, per_round: int = 200) -> list[float]:
    """Seconds per call in each of ``count`` rounds of ``per_round`` calls."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        for _ in range(per_round):
            function()
        times.append((time.perf_counter() - start) / per_round)
    return times


def rounds_with_cpu(function: Callable[[], object], count: int = 21,
                    per_round: int = 200) -> tuple[list[float], list[float]]:
    """Seconds per call in each round, by the wall clock and by this thread's CPU clock (a
    figure other processes on the machine disturb less: they take CPU time away from the
    thread, not add to it)."""
    wall, cpu = [], []
    for _ in range(count):
        start, start_cpu = time.perf_counter(), time.thread_time()
        for _ in range(per_round):
            function()
        cpu.append((time.thread_time() - start_cpu) / per_round)
        wall.append((time.perf_counter() - start) / per_round)
    return wall, cpu


def per_call(function: Callable[[], object], count: int = 21, per_round: int = 200) -> float:
    """Median seconds per call over ``count`` rounds of ``per_round`` calls."""
    return statistics.median(rounds(function, count, per_round))
