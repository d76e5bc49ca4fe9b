"""The threads keeps' requests run in: at most REQUEST_THREADS at once, and what operators
watch is never queued behind them."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from attestcall.service.workers import REQUEST_THREADS, run_in_request_thread
from tests.service.helpers import TIMEOUT
from tests.service.test_app import obtain, serve  # noqa: F401 - the fixture


def test_at_most_request_threads_run_at_once():
    lock = threading.Lock()
    release = threading.Event()
    running = peak = 0

    def work(value: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(TIMEOUT)
        with lock:
            running -= 1
        return 2 * value

    async def main() -> list[int]:
        tasks = [asyncio.ensure_future(run_in_request_thread(work, i))
                 for i in range(3 * REQUEST_THREADS)]
        for _ in range(int(TIMEOUT / 0.01)):
            if running >= REQUEST_THREADS:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # room for any work beyond the bound to start
        busy = running
        release.set()
        results = await asyncio.gather(*tasks)
        assert busy == REQUEST_THREADS
        return results

    assert asyncio.run(main()) == [2 * i for i in range(3 * REQUEST_THREADS)]
    assert peak == REQUEST_THREADS


def test_an_exception_reaches_the_caller():
    def refuse() -> None:
        raise LookupError("refused")

    with pytest.raises(LookupError, match="refused"):
        asyncio.run(run_in_request_thread(refuse))


def test_what_operators_watch_is_answered_while_every_request_thread_waits(
        serve, keeps, monkeypatch):  # noqa: F811 - the fixture
    """More certificate requests than request threads, each decision held (as one waiting
    on a slow collateral service would be): /healthz, /metrics, the CRL and the CA are still
    answered, a challenge asked meanwhile waits its turn, and once the decisions go on
    every request gets its answer."""
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
    issued, challenges, failures = [], [], []

    def keep() -> None:
        try:
            issued.append(obtain(service, keeps["sgx-sim"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    def challenge() -> None:
        try:
            challenges.append(service.challenge())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=keep) for _ in range(REQUEST_THREADS + 2)]
    for thread in threads:
        thread.start()
    late = threading.Thread(target=challenge)
    try:
        for _ in range(REQUEST_THREADS):
            assert started.acquire(timeout=TIMEOUT), "the decisions did not start"
        late.start()
        status, _, body = service.request("GET", "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert service.request("GET", "/metrics")[0] == 200
        assert service.request("GET", "/v1/crl")[0] == 200
        assert service.request("GET", "/v1/ca")[2] == service.ca.pem()
        assert not challenges  # queued behind the held decisions, not refused
    finally:
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        if late.ident is not None:  # started
            late.join(TIMEOUT)
    assert not failures, failures
    assert len(issued) == REQUEST_THREADS + 2 and len(challenges) == 1
    accepted = [e for e in service.storage.audit_log() if e.outcome == "accepted"]
    assert len(accepted) == REQUEST_THREADS + 2
