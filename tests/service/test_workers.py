"""The threads certificate decisions run in: at most DECISION_THREADS at once, and the
other endpoints never wait behind them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from attestcall.service.workers import DECISION_THREADS, run_decision
from tests.service.helpers import TIMEOUT
from tests.service.test_app import obtain, serve  # noqa: F401 - the fixture


def test_at_most_decision_threads_decisions_run_at_once():
    lock = threading.Lock()
    release = threading.Event()
    running = peak = 0

    def decide(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(TIMEOUT)
        with lock:
            running -= 1
        return 2 * value

    async def main() -> list[int]:
        tasks = [asyncio.ensure_future(run_decision(decide, i))
                 for i in range(3 * DECISION_THREADS)]
        for _ in range(int(TIMEOUT / 0.01)):
            if running >= DECISION_THREADS:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # room for any decision beyond the bound to start
        busy = running
        release.set()
        results = await asyncio.gather(*tasks)
        assert busy == DECISION_THREADS
        return results

    assert asyncio.run(main()) == [2 * i for i in range(3 * DECISION_THREADS)]
    assert peak == DECISION_THREADS


def test_a_decision_s_exception_reaches_the_caller():
    def refuse() -> None:
        raise LookupError("refused")

    with pytest.raises(LookupError, match="refused"):
        asyncio.run(run_decision(refuse))


def test_challenges_and_health_are_answered_while_every_decision_thread_waits(
        serve, keeps, monkeypatch):  # noqa: F811 - the fixture
    """More certificate requests than decision threads, each decision held (as one waiting
    on a slow collateral service would be): challenges and /healthz are still answered, and
    once the decisions go on, every request gets its certificate."""
    service = serve()
    endpoints = service.app.state.service
    decide = endpoints._issue
    started = threading.Semaphore(0)
    release = threading.Event()

    def held(body: bytes, peer: str | None) -> bytes:
        started.release()
        release.wait(TIMEOUT)
        return decide(body, peer)

    monkeypatch.setattr(endpoints, "_issue", held)
    issued, failures = [], []

    def keep() -> None:
        try:
            issued.append(obtain(service, keeps["sgx-sim"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=keep) for _ in range(DECISION_THREADS + 2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(DECISION_THREADS):
            assert started.acquire(timeout=TIMEOUT), "the decisions did not start"
        assert len(service.challenge()) == 32
        assert service.request("GET", "/healthz")[0] == 200
    finally:
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert not failures, failures
    assert len(issued) == DECISION_THREADS + 2
    accepted = [e for e in service.storage.audit_log() if e.outcome == "accepted"]
    assert len(accepted) == DECISION_THREADS + 2
