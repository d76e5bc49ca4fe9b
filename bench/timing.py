"""What every benchmark here shares: time a callable in rounds, report per-call figures.

Benchmarks print ratios against a baseline measured in the same run (the machines are
noisy); the median over rounds is the figure, the best round is shown where it helps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


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


def private_home() -> None:
    """Simulated platforms in a fresh temporary home, unless ``$ATTESTCALL_HOME`` names one
    (a bench never touches the user's)."""
    import os
    import tempfile

    if "ATTESTCALL_HOME" not in os.environ:
        os.environ["ATTESTCALL_HOME"] = tempfile.mkdtemp(prefix="attestcall-bench-")


def contract_calls(source: Any, nonce: bytes, size: int) -> tuple[Callable[[], int],
                                                                   Callable[[], int]]:
    """``get_attestation`` through the pure contract against a keep's evidence ``source``:
    (one call with a buffer of ``size``, a size query followed by the call it sized)."""
    from attestcall.abi import BufferMemory, get_attestation

    memory = BufferMemory(bytearray(64 + size))
    memory.write(memory.base, nonce)

    def one_call() -> int:
        return get_attestation(memory.base, 64, memory.base + 64, size, memory=memory,
                               source=source).ret

    def size_query_and_call() -> int:
        answer = get_attestation(0, 0, 0, 0, memory=memory, source=source).ret
        return get_attestation(memory.base, 64, memory.base + 64, answer, memory=memory,
                               source=source).ret

    return one_call, size_query_and_call
