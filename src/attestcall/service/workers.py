"""The threads the service's decisions run in: certificates (read the CSR, consume the
challenge, verify, sign, record) and EAR tokens (verify, sign the claims, record).

A decision holds the interpreter lock for most of its ~2 ms, between short database
waits. Run in Starlette's thread pool (anyio's, 40 threads), a worker under load had as many
decisions in flight as threads, all taking turns at the one lock: every turn a context
switch and cold caches.
Here at most ``DECISION_THREADS`` run at once, enough to cover one another's database
waits; the others queue, costing nothing until a thread is free. Under 64 clients that cut
the server's CPU per certificate by 6-14% (``bench/bench_service.py``: SQLite, PostgreSQL).

Everything else (challenges, the CRL, health, metrics, audit records of refusals) stays in
Starlette's pool, so it is never queued behind decisions (which may wait on a collateral
service for real hardware).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

DECISION_THREADS = 8

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decisions() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # one per process: every application in it shares the bound
            _pool = ThreadPoolExecutor(DECISION_THREADS,
                                       thread_name_prefix="attestcall-decision")
        return _pool


async def run_decision(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in a decision thread, awaited without blocking the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_decisions(), functools.partial(func, *args))
