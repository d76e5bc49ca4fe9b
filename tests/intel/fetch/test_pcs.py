"""attestcall.intel.fetch.pcs.fetch_collateral against a local PCS/PCCS (127.0.0.1 only)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.diskcache import Cache
from attestcall.errors import CollateralError
from attestcall.intel.fetch.pcs import endpoints, fetch_collateral, quote_platform, top_level_spans
from attestcall.intel.sim.sgx import EnclaveIdentity, QuotingEnclave, SimulatedCpu, load_state
from attestcall.intel.sim.sgx.collateral import collateral as sim_collateral
from tests import paths
from tests.clock import Clock
from tests.fakes.collateral_server import CollateralServer, Route, serve_intel

DATA = paths.DATA / "intel"
SGX_QUOTE = (DATA / "sgx_quote_v3.bin").read_bytes()
TDX_QUOTE = (DATA / "tdx_quote_v4.bin").read_bytes()
SGX_COLLATERAL = json.loads((DATA / "sgx_quote_v3.collateral.json").read_text())
TDX_COLLATERAL = json.loads((DATA / "tdx_quote_v4.collateral.json").read_text())
# Inside every vector's validity window; the earliest nextUpdate of the SGX collateral is
# the QE identity's, 2025-07-19T10:01:18Z.
JULY = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
SGX_EXPIRY = dt.datetime(2025, 7, 19, 10, 1, 18, tzinfo=dt.UTC)
API = "/sgx/certification/v4"
SGX_PATHS = [
    f"{API}/pckcrl?ca=processor&encoding=der",
    f"{API}/rootcacrl",
    f"{API}/tcb?fmspc=00A067110000",
    f"{API}/qe/identity",
]
TDX_PATHS = [
    f"{API}/pckcrl?ca=platform&encoding=der",
    f"{API}/rootcacrl",
    "/tdx/certification/v4/tcb?fmspc=B0C06F000000",
    "/tdx/certification/v4/qe/identity",
]
LIMIT = 4 * 1024 * 1024


@pytest.fixture
def server() -> Iterator[CollateralServer]:
    with CollateralServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache", clock=Clock(JULY))


@pytest.fixture
def sgx_server(server: CollateralServer) -> CollateralServer:
    serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    return server


def fetch_sgx(server: CollateralServer, cache: Cache, **kwargs: object) -> dict[str, str]:
    return fetch_collateral(server.url, SGX_QUOTE, cache=cache, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the happy path


def test_quote_platform_reads_the_pck_certificate() -> None:
    assert quote_platform(SGX_QUOTE) == ("sgx", "00A067110000", "processor")
    assert quote_platform(TDX_QUOTE) == ("tdx", "B0C06F000000", "platform")


def test_sgx_collateral_equals_the_vector(sgx_server: CollateralServer, cache: Cache) -> None:
    fetched = fetch_sgx(sgx_server, cache)
    assert list(fetched) == list(SGX_COLLATERAL)
    for name, value in SGX_COLLATERAL.items():
        assert fetched[name] == value, name
    assert sgx_server.requests == SGX_PATHS


def test_tdx_collateral_equals_the_vector(server: CollateralServer, cache: Cache) -> None:
    serve_intel(server, TDX_COLLATERAL, tee="tdx", fmspc="B0C06F000000", ca="platform")
    fetched = fetch_collateral(server.url, TDX_QUOTE, cache=cache)
    assert fetched == TDX_COLLATERAL
    assert fetched["tcb_info"].encode() == TDX_COLLATERAL["tcb_info"].encode()
    assert server.requests == TDX_PATHS


def test_fetched_vector_collateral_verifies_with_dcap_qvl(
    sgx_server: CollateralServer, cache: Cache
) -> None:
    fetched = fetch_sgx(sgx_server, cache)
    report = dcap_qvl.verify(
        SGX_QUOTE,
        dcap_qvl.QuoteCollateralV3.from_json(json.dumps(fetched)),
        int(dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC).timestamp()),
    )
    assert report.status == "ConfigurationAndSWHardeningNeeded"
    assert report.advisory_ids == ["INTEL-SA-00289", "INTEL-SA-00615"]


def test_the_signed_text_is_the_exact_substring(server: CollateralServer, cache: Cache) -> None:
    """Whitespace, key order and a decoy member named like the signed one inside a string
    must not change the text returned: it is cut out of the body, never re-serialised."""
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    odd_text = '{ "version" : 3,\n  "id":"SGX", "nextUpdate": "2025-07-19T10:56:11Z" }'
    route = server.routes[targets["tcb_info"]]
    route.body = (
        '{\n  "note": "\\"tcbInfo\\": {}",\n  "signature" : "'
        + SGX_COLLATERAL["tcb_info_signature"].upper()
        + '",\n  "tcbInfo" :  '
        + odd_text
        + "\n}\n"
    ).encode()
    fetched = fetch_sgx(server, cache)
    assert fetched["tcb_info"] == odd_text
    assert fetched["tcb_info_signature"] == SGX_COLLATERAL["tcb_info_signature"]


def test_der_root_crl_and_v3_header_name_are_accepted(
    server: CollateralServer, cache: Cache
) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets["root_ca_crl"]].body = bytes.fromhex(SGX_COLLATERAL["root_ca_crl"])
    headers = server.routes[targets["tcb_info"]].headers
    headers["SGX-TCB-Info-Issuer-Chain"] = headers.pop("TCB-Info-Issuer-Chain")
    assert fetch_sgx(server, cache) == SGX_COLLATERAL


def test_base_url_may_carry_the_api_path(sgx_server: CollateralServer, cache: Cache) -> None:
    base = sgx_server.url + "/sgx/certification/v4/"
    assert fetch_collateral(base, SGX_QUOTE, cache=cache) == SGX_COLLATERAL
    assert sgx_server.requests == SGX_PATHS


def test_intel_pcs_root_crl_comes_from_intels_certificate_site() -> None:
    urls = endpoints("https://api.trustedservices.intel.com", "tdx", "B0C06F000000", "platform")
    assert urls == {
        "pck_crl": "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl"
        "?ca=platform&encoding=der",
        "root_ca_crl": "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
        "tcb_info": "https://api.trustedservices.intel.com/tdx/certification/v4/tcb"
        "?fmspc=B0C06F000000",
        "qe_identity": "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
    }


def test_simulated_platform_round_trip_verifies_with_dcap_qvl(
    server: CollateralServer, tmp_path: Path
) -> None:
    state = load_state()
    cpu, qe = SimulatedCpu(state), QuotingEnclave(state)
    identity = EnclaveIdentity.for_payload(b"pcs round trip", state)
    quote = qe.quote(cpu.ereport(qe.target_info(), hashlib.sha512(b"n").digest(), identity))
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    served = sim_collateral(state, issued=issued)
    serve_intel(server, served, tee="sgx", fmspc=state.fmspc.hex().upper(), ca="platform")
    fetched = fetch_collateral(server.url, quote, cache=Cache(tmp_path / "c"))
    assert fetched == served
    report = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(json.dumps(fetched)),
        state.root_cert.public_bytes(Encoding.DER),
        int(issued.timestamp()) + 60,
    )
    assert report.status == "UpToDate"


# ----------------------------------------------------------------------------- caching


def test_second_fetch_comes_from_the_cache(sgx_server: CollateralServer, cache: Cache) -> None:
    first = fetch_sgx(sgx_server, cache)
    sgx_server.requests.clear()
    assert fetch_sgx(sgx_server, cache) == first
    assert sgx_server.requests == []


def test_entry_expires_at_the_earliest_next_update(
    sgx_server: CollateralServer, tmp_path: Path
) -> None:
    clock = Clock(JULY)
    cache = Cache(tmp_path / "cache", clock=clock)
    fetch_sgx(sgx_server, cache)
    clock.now = SGX_EXPIRY - dt.timedelta(seconds=1)
    fetch_sgx(sgx_server, cache)
    assert len(sgx_server.requests) == 4  # still cached one second before the QE identity
    clock.now = SGX_EXPIRY
    assert fetch_sgx(sgx_server, cache) == SGX_COLLATERAL
    assert sgx_server.requests == SGX_PATHS * 2


def test_expired_collateral_is_not_stored(sgx_server: CollateralServer, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", clock=Clock(SGX_EXPIRY + dt.timedelta(days=1)))
    fetch_sgx(sgx_server, cache)
    fetch_sgx(sgx_server, cache)
    assert sgx_server.requests == SGX_PATHS * 2


def test_corrupt_entry_is_refetched(sgx_server: CollateralServer, cache: Cache) -> None:
    fetch_sgx(sgx_server, cache)
    entries = list(cache.directory.iterdir())
    assert len(entries) == 1
    entries[0].write_bytes(b"{not json")
    assert fetch_sgx(sgx_server, cache) == SGX_COLLATERAL
    assert sgx_server.requests == SGX_PATHS * 2


def test_tampered_cached_collateral_is_refetched(
    sgx_server: CollateralServer, cache: Cache
) -> None:
    fetch_sgx(sgx_server, cache)
    (entry,) = cache.directory.iterdir()
    stored = json.loads(entry.read_text())
    stored["data"] = stored["data"][:-8] + "AAAAAAA="  # the digest no longer matches
    entry.write_text(json.dumps(stored))
    assert fetch_sgx(sgx_server, cache) == SGX_COLLATERAL
    assert len(sgx_server.requests) == 8


# ------------------------------------------------------------------------------ errors


def error_of(server: CollateralServer, cache: Cache, **kwargs: object) -> str:
    with pytest.raises(CollateralError) as caught:
        fetch_sgx(server, cache, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("part", "status", "expected"),
    [("tcb_info", 404, "HTTP 404"), ("qe_identity", 500, "HTTP 500"),
     ("pck_crl", 503, "HTTP 503"), ("root_ca_crl", 404, "HTTP 404")],
)  # fmt: skip
def test_error_status(
    server: CollateralServer, cache: Cache, part: str, status: int, expected: str
) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets[part]] = Route(b"{}", status=status)
    message = error_of(server, cache)
    assert message.startswith(server.url + targets[part])
    assert expected in message


@pytest.mark.parametrize(
    ("part", "body", "expected"),
    [
        ("tcb_info", b"<html>gateway</html>", "not a JSON object: it does not start with '{'"),
        ("tcb_info", b'{"tcbInfo": {"id": "SGX"}}', "lacks 'tcbInfo' or 'signature'"),
        ("qe_identity", b'{"tcbInfo": {}, "signature": "00"}', "lacks 'enclaveIdentity'"),
        ("tcb_info", b'{"tcbInfo": [], "signature": "' + b"ab" * 64 + b'"}',
         "is not a JSON object"),
        ("tcb_info", b'{"tcbInfo": {}, "signature": "xyz"}', "not 64 bytes of hex"),
        ("tcb_info", b'{"tcbInfo": {}, "tcbInfo": {}, "signature": ""}', "appears twice"),
        ("tcb_info", b'{"tcbInfo": {}, "signature": ""} trailing', "unexpected text after"),
        ("tcb_info", b'{"tcbInfo": {}, "signature": "' + b"ab" * 64 + b'"}',
         "nextUpdate None is not an ISO 8601 UTC date"),
        ("qe_identity", b"\xff\xfe", "not UTF-8"),
        ("qe_identity", b'{"enclaveIdentity":' + b"[" * 100_000, "nests too deeply"),
        ("pck_crl", b"garbage", "the PCK CRL is not a DER CRL"),
        ("root_ca_crl", b"0badc0de", "the root CA CRL is not a DER CRL"),
    ],
)  # fmt: skip
def test_garbage_bodies(
    server: CollateralServer, cache: Cache, part: str, body: bytes, expected: str
) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets[part]].body = body
    message = error_of(server, cache)
    assert expected in message
    assert message.startswith(server.url + targets[part])


@pytest.mark.parametrize(
    ("part", "header"),
    [("pck_crl", "SGX-PCK-CRL-Issuer-Chain"), ("tcb_info", "TCB-Info-Issuer-Chain"),
     ("qe_identity", "SGX-Enclave-Identity-Issuer-Chain")],
)  # fmt: skip
def test_missing_issuer_chain_header(
    server: CollateralServer, cache: Cache, part: str, header: str
) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    del server.routes[targets[part]].headers[header]
    assert f"the answer has no {header} header" in error_of(server, cache)


def test_issuer_chain_header_that_is_not_pem(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    headers = server.routes[targets["tcb_info"]].headers
    for bad in ("hello%20world", "%ff%fe-----BEGIN CERTIFICATE-----"):
        headers["TCB-Info-Issuer-Chain"] = bad
        message = error_of(server, cache)
        assert "the TCB-Info-Issuer-Chain header is not a PEM certificate chain" in message


def test_slow_server_times_out(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets["pck_crl"]].delay = 2.0
    started = time.monotonic()
    message = error_of(server, cache, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert message == f"{server.url}{targets['pck_crl']}: timed out after 0.3 s"


def test_oversized_body_with_content_length(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets["tcb_info"]].body = b" " * (LIMIT + 1)
    message = error_of(server, cache)
    assert message.endswith(f"response of {LIMIT + 1} bytes exceeds the {LIMIT}-byte limit")


def test_oversized_body_without_content_length(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    route = server.routes[targets["qe_identity"]]
    route.body, route.no_length = b" " * (LIMIT + 100), True
    assert error_of(server, cache).endswith(f"response exceeds the {LIMIT}-byte limit")


def test_an_answer_that_is_not_http(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets["pck_crl"]].raw = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
    assert "not a valid HTTP answer (BadStatusLine)" in error_of(server, cache)


def test_redirects_are_refused(server: CollateralServer, cache: Cache) -> None:
    targets = serve_intel(server, SGX_COLLATERAL, tee="sgx", fmspc="00A067110000", ca="processor")
    server.routes[targets["pck_crl"]] = Route(
        status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"}
    )
    assert "HTTP 302" in error_of(server, cache)
    assert server.requests == [targets["pck_crl"]]


def test_nobody_listening(cache: Cache) -> None:
    with CollateralServer() as gone:
        url = gone.url
    with pytest.raises(CollateralError, match=r"cannot connect: .*[Rr]efused"):
        fetch_collateral(url, SGX_QUOTE, cache=cache)


@pytest.mark.parametrize("base", ["file:///etc", "ftp://127.0.0.1/", "127.0.0.1:8081", ""])
def test_only_http_urls(base: str, cache: Cache) -> None:
    with pytest.raises(CollateralError, match="not an http"):
        fetch_collateral(base, SGX_QUOTE, cache=cache)


def test_a_quote_without_a_pck_chain(server: CollateralServer, cache: Cache) -> None:
    with pytest.raises(CollateralError, match="cannot find the quote's platform"):
        fetch_collateral(server.url, SGX_QUOTE[:600], cache=cache)
    with pytest.raises(CollateralError, match="cannot find the quote's platform"):
        fetch_collateral(server.url, SGX_QUOTE + b"\x01", cache=cache)
    assert server.requests == []


def test_zero_padding_after_a_quote_is_tolerated() -> None:
    assert quote_platform(TDX_QUOTE + bytes(64)) == ("tdx", "B0C06F000000", "platform")


def test_top_level_spans() -> None:
    text = ' { "a" : [1, {"b": "}"}] , "c":"x" } '
    spans = top_level_spans(text)
    assert {name: text[start:end] for name, (start, end) in spans.items()} == {
        "a": '[1, {"b": "}"}]',
        "c": '"x"',
    }
    assert top_level_spans("{}") == {}
    for bad in ("[]", "{", '{"a" 1}', '{"a": 1,}', '{"a": 1} {}', '{"a": 1 "b": 2}'):
        with pytest.raises(ValueError):
            top_level_spans(bad)


def test_cli_verify_with_pccs(server: CollateralServer, tmp_path: Path) -> None:
    state = load_state()
    cpu, qe = SimulatedCpu(state), QuotingEnclave(state)
    identity = EnclaveIdentity.for_payload(b"cli --pccs", state)
    quote_file = tmp_path / "quote.bin"
    quote_file.write_bytes(qe.quote(cpu.ereport(qe.target_info(), bytes(64), identity)))
    served = sim_collateral(state)
    serve_intel(server, served, tee="sgx", fmspc=state.fmspc.hex().upper(), ca="platform")
    env = dict(os.environ, ATTESTCALL_CACHE=str(tmp_path / "cli-cache"))
    command = [sys.executable, "-m", "attestcall", "verify", "--pccs", server.url,
               "--trust-simulated", "--json", str(quote_file)]  # fmt: skip
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        verdict = json.loads(done.stdout)
        assert verdict["accepted"] and verdict["tcb_status"] == "UpToDate"
    assert len(server.requests) == 4  # the second run is served from the cache


# ------------------------------------------------------------------ PcsSource (per question)


def test_pcs_source_answers_the_verifier_and_caches_each_answer(
    sgx_server: CollateralServer, cache: Cache
) -> None:
    from attestcall.intel.fetch.pcs import PcsSource
    from attestcall.intel.roots import intel_root
    from attestcall.intel.verify.appraise import appraise_sgx

    at = dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)
    source = PcsSource(sgx_server.url, cache=cache)
    result = appraise_sgx(SGX_QUOTE, collateral=source, at=at, roots=[intel_root()])
    assert result.problems == []
    assert sgx_server.requests == SGX_PATHS
    assert len(list(cache.directory.iterdir())) == 4  # one entry per question
    sgx_server.requests.clear()
    again = PcsSource(sgx_server.url, cache=cache)
    assert again.tcb_info("sgx", "00A067110000").text == SGX_COLLATERAL["tcb_info"]
    assert again.pck_crl("processor").crl == SGX_COLLATERAL["pck_crl"]
    assert again.root_ca_crl() == SGX_COLLATERAL["root_ca_crl"]
    assert again.qe_identity("sgx").signature == SGX_COLLATERAL["qe_identity_signature"]
    assert sgx_server.requests == []


def test_pcs_source_refetches_a_corrupt_entry(sgx_server: CollateralServer, cache: Cache) -> None:
    from attestcall.intel.fetch.pcs import PcsSource

    PcsSource(sgx_server.url, cache=cache).qe_identity("sgx")
    (entry,) = cache.directory.iterdir()
    entry.write_bytes(b"not what was stored")
    sgx_server.requests.clear()
    answer = PcsSource(sgx_server.url, cache=cache).qe_identity("sgx")
    assert answer.text == SGX_COLLATERAL["qe_identity"]
    assert sgx_server.requests == [f"{API}/qe/identity"]


def test_pcs_source_reports_a_missing_answer(server: CollateralServer, cache: Cache) -> None:
    from attestcall.intel.fetch.pcs import PcsSource

    with pytest.raises(CollateralError, match="404"):
        PcsSource(server.url, cache=cache).tcb_info("sgx", "00A067110000")
