"""The service as a PCCS and a KDS: a real uvicorn on 127.0.0.1 in front of the collateral
cache, a fake Intel PCS / AMD KDS upstream counting requests. Clients no one here wrote
use it: dcap-qvl (``get_collateral`` then ``verify``) for real quotes from tests/data/ and
for simulated ones, and ``attestcall verify --pccs/--kds``. Bad requests are problem
documents; an upstream outage with nothing cached is 503; offline serves what it holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.deploy.identity import attest
from attestcall.intel.sim import sgx as sgx_sim
from attestcall.service.collateral import CollateralCache
from attestcall.service.collateral_store import Item
from tests import paths
from tests.clock import Clock
from tests.fakes.collateral_server import CollateralServer, Route, serve_intel
from tests.service.helpers import (
    TIMEOUT,
    assert_problem,
    environment,
    make_csr,
    serve_simulated_pcs,
)
from tests.service.test_app import Running

DATA = paths.DATA
SGX_QUOTE = (DATA / "intel/sgx_quote_v3.bin").read_bytes()
TDX_QUOTE = (DATA / "intel/tdx_quote_v4.bin").read_bytes()
SGX = json.loads((DATA / "intel/sgx_quote_v3.collateral.json").read_text())
TDX = json.loads((DATA / "intel/tdx_quote_v4.collateral.json").read_text())
REPORT = (DATA / "amd/milan_report_v2.bin").read_bytes()
VCEK = (DATA / "amd/milan_report_v2.vcek.der").read_bytes()
MILAN_CHAIN = (DATA / "amd/ask_ark_milan.pem").read_bytes()
MILAN_CRL = (DATA / "amd/crl_milan.der").read_bytes()  # AMD's: 2026-06-22 to 2026-08-08
CHIP_ID = REPORT[0x1A0:0x1E0].hex()
VCEK_PATH = f"/vcek/v1/Milan/{CHIP_ID}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
API = "/sgx/certification/v4"
SGX_TCB = f"{API}/tcb?fmspc=00A067110000"
# The instants existing dcap-qvl tests verify the vectors at (inside their windows).
SGX_AT = dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)
JULY = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)


@pytest.fixture
def upstream() -> Iterator[CollateralServer]:
    """A PCS and KDS with the real vectors' collateral."""
    with CollateralServer() as server:
        serve_intel(server, SGX, tee="sgx", fmspc="00A067110000", ca="processor")
        serve_intel(server, TDX, tee="tdx", fmspc="B0C06F000000", ca="platform")
        server.routes[VCEK_PATH] = Route(VCEK)
        server.routes["/vcek/v1/Milan/cert_chain"] = Route(MILAN_CHAIN)
        server.routes["/vcek/v1/Milan/crl"] = Route(MILAN_CRL)
        yield server


@pytest.fixture
def service(tmp_path, upstream, keeps) -> Iterator[Running]:
    """The service with the fake upstream as its PCCS and KDS, simulated roots trusted."""
    running = Running(tmp_path / "home", pccs=upstream.url, kds=upstream.url,
                      trust_simulated=True)
    try:
        yield running
    finally:
        running.stop()


def get(service: Running, path: str) -> tuple[int, dict[str, str], bytes]:
    return service.request("GET", path)


def collateral_of(url: str, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
    async def fetching() -> dcap_qvl.QuoteCollateralV3:
        return await dcap_qvl.get_collateral(url, quote)

    return asyncio.run(fetching())


# ------------------------------------------------------------------ Intel's paths


def test_the_pccs_paths_answer_as_the_upstream_did_and_ask_it_once(service, upstream):
    for _ in range(3):
        status, headers, body = get(service, SGX_TCB)
        assert status == 200 and headers["content-type"] == "application/json"
        route = upstream.routes[SGX_TCB]
        assert body == route.body
        assert headers["tcb-info-issuer-chain"] == route.headers["TCB-Info-Issuer-Chain"]
        status, headers, body = get(service, "/tdx/certification/v4/qe/identity")
        assert status == 200
        assert urllib.parse.unquote(headers["sgx-enclave-identity-issuer-chain"]) == \
            TDX["qe_identity_issuer_chain"]
        assert json.loads(body)["signature"] == TDX["qe_identity_signature"]
    der = bytes.fromhex(SGX["pck_crl"])
    status, headers, body = get(service, f"{API}/pckcrl?ca=processor&encoding=der")
    assert (status, body, headers["content-type"]) == (200, der, "application/pkix-crl")
    assert urllib.parse.unquote(headers["sgx-pck-crl-issuer-chain"]) == \
        SGX["pck_crl_issuer_chain"]
    status, headers, body = get(service, f"{API}/pckcrl?ca=processor")  # PEM by default
    assert x509.load_pem_x509_crl(body).public_bytes(Encoding.DER) == der
    status, _, body = get(service, f"{API}/rootcacrl")
    assert (status, body.decode()) == (200, SGX["root_ca_crl"])  # hex, as a PCCS does
    assert get(service, f"{API}/rootcacrl?encoding=der")[2] == bytes.fromhex(SGX["root_ca_crl"])
    assert sorted(upstream.requests) == sorted([
        SGX_TCB, "/tdx/certification/v4/qe/identity", f"{API}/pckcrl?ca=processor&encoding=der",
        f"{API}/rootcacrl"])


def test_a_running_service_refreshes_due_collateral_before_it_is_asked(tmp_path, upstream,
                                                                       keeps):
    clock = Clock(JULY)
    running = Running(tmp_path / "home", pccs=upstream.url, kds=upstream.url, clock=clock,
                      collateral_refresh=0.05)
    try:
        assert get(running, SGX_TCB)[0] == 200
        clock.advance(hours=25)  # due: the server's refresher fetches it again, unasked
        for _ in range(600):  # bounded: 30 s
            if upstream.requests.count(SGX_TCB) == 2:
                break
            threading.Event().wait(0.05)
        assert upstream.requests.count(SGX_TCB) == 2
        assert get(running, SGX_TCB)[0] == 200  # then served fresh, with no fetch
        assert upstream.requests.count(SGX_TCB) == 2
    finally:
        running.stop()


def test_dcap_qvl_accepts_what_the_service_serves_for_real_quotes(service, upstream):
    collateral = collateral_of(service.url, SGX_QUOTE)
    assert json.loads(collateral.to_json())["tcb_info"] == SGX["tcb_info"]
    report = dcap_qvl.verify(SGX_QUOTE, collateral, int(SGX_AT.timestamp()))
    assert report.status == "ConfigurationAndSWHardeningNeeded"
    assert report.advisory_ids == ["INTEL-SA-00289", "INTEL-SA-00615"]
    # A base URL with the API path, as PCCS users often give it.
    collateral = collateral_of(f"{service.url}/sgx/certification/v4/", TDX_QUOTE)
    assert dcap_qvl.verify(TDX_QUOTE, collateral, int(JULY.timestamp())).status == "UpToDate"
    before = len(upstream.requests)
    collateral_of(service.url, SGX_QUOTE)
    assert len(upstream.requests) == before  # served from the database


@pytest.mark.parametrize("keep", ["sgx-sim", "tdx-sim"])
def test_dcap_qvl_accepts_what_the_service_serves_for_simulated_quotes(
        service, upstream, keeps, tmp_path_factory, keep):
    sim_home = tmp_path_factory.getbasetemp() / "attestcall-home"
    serve_simulated_pcs(upstream, sim_home)
    _, quote = attest(keeps[keep], bytes(64))
    collateral = collateral_of(service.url, quote)
    root = sgx_sim.load_state(sim_home).root_cert.public_bytes(Encoding.DER)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    report = dcap_qvl.verify_with_root_ca(quote, collateral, root, now)
    assert report.status == "UpToDate"
    with pytest.raises(ValueError):  # dcap-qvl's own root is Intel's: not this chain
        dcap_qvl.verify(quote, collateral, now)


def test_attestcall_verify_uses_the_service_as_pccs_and_kds(service, upstream, tmp_path,
                                                          tmp_path_factory):
    env = environment(tmp_path_factory.getbasetemp() / "attestcall-home")
    env["ATTESTCALL_CACHE"] = str(tmp_path / "client-cache")  # no answer from a disk cache

    def run(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "attestcall", "verify", "--json", *args],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    tdx = run("--pccs", service.url, "--at", "2025-07-01T00:00:00Z",
              str(DATA / "intel/tdx_quote_v4.bin"))
    assert tdx["accepted"] and tdx["tcb_status"] == "UpToDate", tdx
    sgx = run("--pccs", service.url, "--at", "2025-07-01T00:00:00Z",
              str(DATA / "intel/sgx_quote_v3.bin"))
    assert sgx["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert sgx["reasons"] == ["TCB status ConfigurationAndSWHardeningNeeded is not accepted "
                              "by the policy (accepted: UpToDate, SWHardeningNeeded)"]
    snp = run("--kds", service.url, "--at", "2026-07-01T00:00:00Z",
              str(DATA / "amd/milan_report_v2.bin"))
    assert snp["accepted"], snp
    assert VCEK_PATH in upstream.requests and "/vcek/v1/Milan/crl" in upstream.requests


# ------------------------------------------------------------------ AMD's paths


def test_the_kds_paths(service, upstream):
    status, headers, body = get(service, VCEK_PATH.replace("blSPL=03", "blSPL=3"))
    assert (status, body) == (200, VCEK)
    assert get(service, "/vcek/v1/Milan/cert_chain")[2] == MILAN_CHAIN
    assert get(service, "/vcek/v1/Milan/crl")[2] == MILAN_CRL
    assert_problem(*get(service, "/vcek/v1/Genoa/cert_chain"), 404)
    assert_problem(*get(service, "/vlek/v1/Milan/crl"), 404)
    assert upstream.requests.count(VCEK_PATH) == 1


# ------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("path, status", [
    (f"{API}/pckcrl", 400),
    (f"{API}/pckcrl?ca=root", 400),
    (f"{API}/pckcrl?ca=processor&ca=platform", 400),
    (f"{API}/pckcrl?ca=processor&encoding=base64", 400),
    (f"{API}/tcb", 400),
    (f"{API}/tcb?fmspc=XYZ", 400),
    (f"{API}/tcb?fmspc=00A06711000", 400),
    (f"{SGX_TCB}&junk=1", 400),
    (f"{SGX_TCB}&update=late", 400),
    (f"{API}/qe/identity?fmspc=00A067110000", 400),
    (f"{API}/rootcacrl?encoding=json", 400),
    (f"{API}/pckcert", 400),
    (f"{API}/pckcert?cpusvn=00&pcesvn=0000&pceid=0000&qeid=00", 400),
    (f"/vcek/v1/Rome/{CHIP_ID}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115", 400),
    (f"/vcek/v1/Milan/{CHIP_ID[:16]}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115", 400),
    (f"/vcek/v1/Milan/{CHIP_ID}?blSPL=3&teeSPL=0&snpSPL=8", 400),
    (f"/vcek/v1/Milan/{CHIP_ID}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=300", 400),
    ("/vcek/v1/Milan/cert_chain?x=1", 400),
    ("/vcek/v1/Rome/crl", 400),
    (f"/vlek/v1/Milan/{CHIP_ID}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115", 404),
    ("/sgx/certification/v3/tcb?fmspc=00A067110000", 404),
    ("/vcek/v2/Milan/cert_chain", 404),
])
def test_bad_requests_are_problem_documents_and_reach_no_upstream(service, upstream, path,
                                                                  status):
    document = assert_problem(*get(service, path), status)
    assert "Traceback" not in document["detail"]
    assert upstream.requests == []


def test_other_methods_are_refused(service, upstream):
    assert_problem(*service.request("POST", SGX_TCB, b"{}"), 405)
    assert_problem(*service.request("DELETE", "/vcek/v1/Milan/crl"), 405)
    assert upstream.requests == []


# ------------------------------------------------------------------ upstream trouble


def test_an_upstream_outage_with_nothing_cached_is_503(tmp_path, keeps):
    with CollateralServer() as gone:
        down = gone.url
    running = Running(tmp_path / "home", pccs=down, kds=down)
    try:
        for path in (SGX_TCB, "/vcek/v1/Milan/cert_chain"):
            status, headers, body = get(running, path)
            document = assert_problem(status, headers, body, 503)
            assert document["type"].endswith("/collateral-unavailable")
            assert "cannot connect" in document["detail"]
            assert int(headers["retry-after"]) >= 1
    finally:
        running.stop()


def test_an_item_the_upstream_does_not_have_is_404(service, upstream):
    document = assert_problem(*get(service, f"{API}/tcb?fmspc=00A067110001"), 404)
    assert "HTTP 404" in document["detail"]


def test_garbage_from_the_upstream_is_503_then_served_once_repaired(tmp_path, upstream, keeps):
    good = upstream.routes[SGX_TCB]
    upstream.routes[SGX_TCB] = Route(b"garbage")
    running = Running(tmp_path / "home", pccs=upstream.url, collateral_backoff=0)
    try:
        document = assert_problem(*get(running, SGX_TCB), 503)
        assert "refused" in document["detail"]
        assert CollateralCache(running.storage, offline=True).peek(
            Item("intel", "tcb", "sgx/00A067110000")) is None
        upstream.routes[SGX_TCB] = good
        assert get(running, SGX_TCB)[2] == good.body
    finally:
        running.stop()


def test_collateral_metrics(service, upstream):
    for _ in range(2):
        get(service, SGX_TCB)
        get(service, VCEK_PATH)
    get(service, f"{API}/tcb?fmspc=00A067110001")
    text = get(service, "/metrics")[2].decode()
    for line in (
            'attestcall_collateral_hits_total{kind="tcb",vendor="intel"} 1.0',
            'attestcall_collateral_misses_total{kind="tcb",vendor="intel"} 2.0',
            'attestcall_collateral_upstream_fetches_total{kind="tcb",vendor="intel"} 2.0',
            'attestcall_collateral_upstream_errors_total{kind="tcb",vendor="intel"} 1.0',
            'attestcall_collateral_hits_total{kind="vcek",vendor="amd"} 1.0',
            'attestcall_service_requests_total{path="/sgx/certification/v4/tcb",status="200"} '
            '2.0',
            'attestcall_service_requests_total{path="/vcek/v1/{product}/{hwid}",status="200"} '
            '2.0'):
        assert line in text, line


# ------------------------------------------------------------------ offline


def test_offline_serves_what_it_holds_and_refuses_what_it_lacks(tmp_path, upstream, keeps):
    running = Running(tmp_path / "home", pccs=upstream.url, trust_simulated=True,
                      offline=True)
    try:
        route = upstream.routes[SGX_TCB]
        CollateralCache(running.storage, offline=True).put(
            Item("intel", "tcb", "sgx/00A067110000"), route.body, route.headers)
        assert get(running, SGX_TCB)[2] == route.body  # long past its next update
        document = assert_problem(*get(running, f"{API}/qe/identity"), 404)
        assert "offline" in document["detail"]
        # A simulated SGX keep's evidence needs collateral the service does not hold.
        csr, _ = make_csr(keeps["sgx-sim"], running.challenge())
        document = assert_problem(*running.post_csr(csr), 403)
        assert "offline" in document["detail"] and "not in the collateral cache" in \
            document["detail"]
        assert upstream.requests == []
    finally:
        running.stop()


def test_a_pck_certificate_passes_through_cached_by_its_query(service, upstream,
                                                             tmp_path_factory):
    state = sgx_sim.load_state(tmp_path_factory.getbasetemp() / "attestcall-home")
    chain = (state.platform_ca_cert.public_bytes(Encoding.PEM)
             + state.root_cert.public_bytes(Encoding.PEM)).decode()
    pck = state.pck_cert.public_bytes(Encoding.PEM)
    headers = {"SGX-PCK-Certificate-Issuer-Chain": urllib.parse.quote(chain, safe=""),
               "SGX-TCBm": "0B0B0202FF010C0000000000000000000D00",
               "SGX-FMSPC": "00906ED50000", "SGX-PCK-Certificate-CA-Type": "platform"}
    query = f"cpusvn={'0B' * 16}&encrypted_ppid={'AB' * 384}&pceid=0000&pcesvn=0D00"
    upstream.routes[f"{API}/pckcert?{query}"] = Route(pck, headers=headers)
    asked = (f"{API}/pckcert?pcesvn=0d00&pceid=0000&encrypted_ppid={'ab' * 384}"
             f"&cpusvn={'0b' * 16}")
    for _ in range(2):
        status, answer, body = get(service, asked)
        assert (status, body) == (200, pck)
        assert {name: answer[name.lower()] for name in headers} == headers
    assert upstream.requests == [f"{API}/pckcert?{query}"]
