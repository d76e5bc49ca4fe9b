"""The threads a replica's keeps are served in: challenges made, and decisions, for
certificates (read the CSR, consume the challenge, verify, sign, record) and EAR tokens
(verify, sign the claims, record).

A decision holds the interpreter lock for most of its ~2 ms, between short database waits.
Run in Starlette's thread pool (anyio's, 40 threads), a worker under load had as many
requests in flight as threads, all taking turns at the one lock: every turn a context
switch and cold caches. Here at most ``REQUEST_THREADS`` run at once, enough to cover one
another's database waits; the others queue, costing nothing until a thread is free. Under
64 clients that cut the server's CPU per certificate by 6-14% for decisions
(``bench/bench_service.py``, SQLite and PostgreSQL), and by 3-6% more with the challenges
in the same threads, not in 40 of their own.

What operators watch (``/healthz``, ``/metrics``, the CRL) and the audit records of
refusals stay in Starlette's pool: they are never queued behind keeps' requests, which may
wait on a collateral service for real hardware.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

REQUEST_THREADS = 8

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # one per process: every application in it shares the bound
            _pool = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="attestcall-request")
        return _pool


async def run_in_request_thread(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in one of the request threads, awaited without blocking the event
    loop; queued (first come, first served) while all of them are busy."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads(), functools.partial(func, *args))
