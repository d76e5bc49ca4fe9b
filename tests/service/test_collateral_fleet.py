"""The fleet's collateral cache with real processes: two ``service serve`` replicas of two
workers each, sharing one real PostgreSQL, verify many simulated SGX and TDX keeps at once
with their collateral from a (slow) fake PCS: each item is fetched from the upstream
exactly once, for all four processes and every request."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.fakes.collateral_server import CollateralServer
from tests.service.helpers import TIMEOUT, exchange, make_csr, serve_simulated_pcs


def test_replicas_fetch_each_item_once(postgres, pg_url, keeps, replica, tmp_path_factory):
    with CollateralServer() as upstream:
        serve_simulated_pcs(upstream, tmp_path_factory.getbasetemp() / "attestcall-home")
        for route in upstream.routes.values():
            route.delay = 0.5  # every request arrives while the first fetch is under way
        replicas = [replica(pg_url, "--pccs", upstream.url, "--workers", "2")
                    for _ in range(2)]
        clients = 24
        csrs = []
        for index in range(clients):  # evidence made first: the posts then arrive together
            served = replicas[index % 2]
            csr, _ = make_csr(keeps[("sgx-sim", "tdx-sim")[index // 2 % 2]], served.challenge())
            csrs.append((served, csr))
        start = threading.Barrier(clients)

        def post(index: int) -> int:
            served, csr = csrs[index]
            start.wait(TIMEOUT)
            status, _, body = exchange(served.port, "POST", "/v1/certificate", csr)
            assert status == 200, body
            return status

        with ThreadPoolExecutor(clients) as pool:
            assert list(pool.map(post, range(clients))) == [200] * clients
        api = "/sgx/certification/v4"
        assert sorted(upstream.requests) == sorted([
            f"{api}/pckcrl?ca=platform&encoding=der", f"{api}/rootcacrl",
            f"{api}/tcb?fmspc=00906ED50000", f"{api}/qe/identity",
            "/tdx/certification/v4/tcb?fmspc=00906ED50000", "/tdx/certification/v4/qe/identity",
        ])
        metrics = [served.request("GET", "/metrics")[1].decode() for served in replicas]
        fetches = sum(float(line.rsplit(" ", 1)[1]) for text in metrics
                      for line in text.splitlines()
                      if line.startswith("attestcall_collateral_upstream_fetches_total{"))
        assert fetches == 6
