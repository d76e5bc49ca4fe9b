"""Collateral the way users expect: Intel's PCS and AMD's KDS by default (here local fakes
named by ATTESTCALL_PCCS_URL / ATTESTCALL_KDS_URL: the machine is offline), --offline,
the one line saying what is fetched from where, retries on 5xx and 429,
``attestcall collateral``, and simulated quotes verified with --trust-simulated alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import attestcall
from attestcall import fetch
from attestcall.errors import CollateralError, CollateralUnavailable
from tests import paths
from tests.fakes.collateral_server import CollateralServer, Route, serve_intel

DATA = paths.DATA
SGX_QUOTE = DATA / "intel/sgx_quote_v3.bin"
SGX = json.loads((DATA / "intel/sgx_quote_v3.collateral.json").read_text())
SGX_AT = "2025-07-19T10:01:17Z"
REPORT = DATA / "amd/milan_report_v2.bin"
VCEK = (DATA / "amd/milan_report_v2.vcek.der").read_bytes()
CHIP_ID = REPORT.read_bytes()[0x1A0:0x1E0].hex()
VCEK_PATH = f"/vcek/v1/Milan/{CHIP_ID}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
CRL_PATH = "/vcek/v1/Milan/crl"
IN_CRL = "2026-07-01T00:00:00Z"  # inside AMD's Milan CRL of tests/data/amd


@pytest.fixture
def services() -> Iterator[CollateralServer]:
    """One fake playing Intel's PCS and AMD's KDS, with the real vectors' collateral."""
    with CollateralServer() as server:
        serve_intel(server, SGX, tee="sgx", fmspc="00A067110000", ca="processor")
        server.routes[VCEK_PATH] = Route(VCEK)
        server.routes["/vcek/v1/Milan/cert_chain"] = Route(
            (DATA / "amd/ask_ark_milan.pem").read_bytes())
        server.routes[CRL_PATH] = Route((DATA / "amd/crl_milan.der").read_bytes())
        yield server


@pytest.fixture
def online(services, monkeypatch) -> CollateralServer:
    """The defaults pointed at the fake (as if Intel's and AMD's services answered)."""
    monkeypatch.delenv("ATTESTCALL_OFFLINE")
    monkeypatch.setenv("ATTESTCALL_PCCS_URL", services.url)
    monkeypatch.setenv("ATTESTCALL_KDS_URL", services.url)
    return services


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "attestcall", *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env or dict(os.environ))


# ------------------------------------------------------------------ the API


def test_intel_collateral_comes_from_the_default_service(online) -> None:
    said: list[str] = []
    verdict = attestcall.verify(SGX_QUOTE.read_bytes(), at=SGX_AT, progress=said.append)
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"  # its real status
    assert any("/tcb?fmspc=00A067110000" in r for r in online.requests)
    assert len(said) == 1 and said[0].startswith(
        f"fetching Intel collateral (PCK CRL, TCB info, QE identity) from {online.url}")


def test_offline_fetches_nothing(online) -> None:
    with pytest.raises(CollateralError, match="needs Intel collateral"):
        attestcall.verify(SGX_QUOTE.read_bytes(), at=SGX_AT, offline=True)
    assert online.requests == []


def with_table(report: bytes) -> bytes:
    from attestcall.amd.formats import certs as amdcerts

    return report + amdcerts.pack_table([(amdcerts.VCEK_GUID, VCEK)])


def test_kds_gives_certificates_only_when_the_table_lacks_the_key(online) -> None:
    report = REPORT.read_bytes()
    verdict = attestcall.verify(report, at=IN_CRL)
    assert verdict.accepted, verdict.reasons
    assert online.requests == [VCEK_PATH, "/vcek/v1/Milan/cert_chain", CRL_PATH]
    online.requests.clear()
    said: list[str] = []
    assert attestcall.verify(with_table(report), at=IN_CRL, progress=said.append).accepted
    assert online.requests == [CRL_PATH]  # the table has the VCEK; revocation still checked
    assert said and said[0].startswith(f"fetching revocation lists from {online.url}")


def test_a_table_report_is_checked_against_the_kds_crl(online, tmp_path) -> None:
    """The CRL fetched for a table report is used: once expired, it is unusable (exit 2),
    never a silent pass; --offline fetches nothing and leaves revocation unchecked."""
    evidence = tmp_path / "report-with-table.bin"
    evidence.write_bytes(with_table(REPORT.read_bytes()))
    late = run("verify", "--at", "2026-09-01T00:00:00Z", str(evidence))
    assert late.returncode == 2 and "CRL of ARK-Milan has expired" in late.stderr
    online.requests.clear()
    offline = run("verify", "--offline", "--at", "2026-09-01T00:00:00Z", str(evidence))
    assert offline.returncode == 0, offline.stderr
    assert online.requests == []


def test_a_table_report_with_a_bad_kds_crl_is_unusable(online) -> None:
    online.routes[CRL_PATH] = Route(b"not a CRL")
    with pytest.raises(CollateralError, match="not a CRL"):
        attestcall.verify(with_table(REPORT.read_bytes()), at=IN_CRL)
    online.routes[CRL_PATH] = Route(b"gone", status=404)
    with pytest.raises(CollateralError, match="404"):
        attestcall.verify(with_table(REPORT.read_bytes()), at=IN_CRL)


def test_a_vlek_table_report_asks_for_the_vlek_crl(services, tmp_path) -> None:
    """KDS publishes the VLEK family's CRL at its own path; only AMD's ARKs have one."""
    from attestcall.amd.fetch.kds import KdsRevocation
    from attestcall.amd.roots import amd_arks
    from attestcall.diskcache import Cache

    services.routes["/vlek/v1/Milan/crl"] = services.routes[CRL_PATH]
    source = KdsRevocation(services.url, cache=Cache(tmp_path))
    milan = next(ark for ark in amd_arks() if "Milan" in ark.subject.rfc4514_string())
    assert source.vceks(None) == [] and source.vleks() == []  # type: ignore[arg-type]
    assert source.signing_cas("Milan") == [] and source.arks("Milan") == []
    assert source.revocation_required
    assert len(source.crls("vlek", "Milan", milan)) == 1
    assert services.requests == ["/vlek/v1/Milan/crl"]
    assert source.crls("vlek", None, milan) == []  # no product line: nothing to ask
    assert services.requests == ["/vlek/v1/Milan/crl"]


def test_named_services_win_and_feed_only_their_tee(services, monkeypatch) -> None:
    monkeypatch.setenv("ATTESTCALL_PCCS_URL", "http://127.0.0.1:1")  # never asked
    verdict = attestcall.verify(SGX_QUOTE.read_bytes(), at=SGX_AT, pccs=services.url,
                                kds="http://127.0.0.1:1")
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"


# ------------------------------------------------------------------ retries


class Flaky:
    """A fetch.get stand-in: fails with the given (status, Retry-After) answers, then
    succeeds."""

    def __init__(self, *failures: tuple[int, float | None]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self, url: str, **options: object) -> fetch.Response:
        self.calls += 1
        if self.failures:
            status, after = self.failures.pop(0)
            raise fetch.status_error(f"{url}: HTTP {status}", status, after)
        return fetch.Response(url, 200, {}, b"ok")


def test_retries_back_off_and_honour_retry_after(monkeypatch) -> None:
    slept: list[float] = []
    flaky = Flaky((503, None), (429, 3.0), (502, None))
    monkeypatch.setattr(fetch, "get", flaky)
    answer = fetch.get_retrying("http://x/", sleep=slept.append)
    assert answer.body == b"ok" and flaky.calls == 4
    assert slept == [0.5, 3.0, 2.0]  # backoff doubles; Retry-After replaces it once


def test_retries_are_bounded(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(fetch, "get", Flaky((429, 20.0), (429, 20.0)))
    with pytest.raises(CollateralUnavailable, match=r"HTTP 429 \(tried 2 times\)"):
        fetch.get_retrying("http://x/", sleep=slept.append, budget=30.0)
    assert slept == [20.0]  # a second 20 s wait would pass the 30 s budget
    flaky = Flaky(*[(500, None)] * 9)
    monkeypatch.setattr(fetch, "get", flaky)
    with pytest.raises(CollateralUnavailable, match=r"tried 4 times"):
        fetch.get_retrying("http://x/", sleep=slept.append)
    assert flaky.calls == fetch.RETRY_ATTEMPTS


def test_a_refusal_is_not_retried(monkeypatch) -> None:
    flaky = Flaky((404, None))
    monkeypatch.setattr(fetch, "get", flaky)
    with pytest.raises(fetch.HttpStatusError, match="HTTP 404$"):
        fetch.get_retrying("http://x/", sleep=lambda _: None)
    assert flaky.calls == 1


def test_a_busy_kds_is_asked_again(services, tmp_path) -> None:
    """A real 503 with Retry-After from the fake KDS, then the VCEK."""
    from attestcall.amd.fetch.kds import fetch_vcek
    from attestcall.diskcache import Cache

    services.routes[VCEK_PATH] = Route(b"busy", status=503, headers={"Retry-After": "0"},
                                       then=services.routes[VCEK_PATH])
    bundle = fetch_vcek(services.url, REPORT.read_bytes(), cache=Cache(tmp_path))
    assert bundle.startswith(b"-----BEGIN CERTIFICATE-----")
    assert services.requests.count(VCEK_PATH) == 2


# ------------------------------------------------------------------ the command line


def test_cli_says_what_it_fetches_from_where(online) -> None:
    done = run("verify", "--at", SGX_AT, str(SGX_QUOTE))
    assert done.returncode == 1, done.stderr  # genuine, but its TCB status is not accepted
    assert done.stderr.splitlines() == [
        f"attestcall: fetching Intel collateral (PCK CRL, TCB info, QE identity) from "
        f"{online.url} (cached in {os.environ['ATTESTCALL_CACHE']})"]
    quiet = run("verify", "-q", "--at", SGX_AT, str(SGX_QUOTE))
    assert quiet.returncode == 1 and quiet.stderr == ""
    online.requests.clear()
    offline = run("verify", "--offline", "--at", SGX_AT, str(SGX_QUOTE))
    assert offline.returncode == 2 and "needs Intel collateral" in offline.stderr
    assert online.requests == []


def test_collateral_command_for_sgx_then_verify_offline(online, tmp_path) -> None:
    out = tmp_path / "coll.json"
    done = run("collateral", str(SGX_QUOTE), "-o", str(out))
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    assert written == {key: SGX[key] for key in written} and set(written) >= {
        "pck_crl", "root_ca_crl", "tcb_info", "qe_identity", "tcb_info_issuer_chain"}
    again = run("verify", "--offline", "--collateral", str(out), "--at", SGX_AT,
                str(SGX_QUOTE))
    assert again.returncode == 1 and "ConfigurationAndSWHardeningNeeded" in again.stdout


def test_collateral_command_for_snp_carries_the_crl(online, tmp_path) -> None:
    out = tmp_path / "certs.pem"
    done = run("collateral", "-q", str(REPORT), "-o", str(out))
    assert done.returncode == 0, done.stderr
    pem = out.read_bytes()
    assert pem.count(b"BEGIN CERTIFICATE") == 3 and pem.count(b"BEGIN X509 CRL") == 1
    ok = run("verify", "--offline", "--certs", str(out), "--at", IN_CRL, str(REPORT))
    assert ok.returncode == 0, ok.stderr
    late = run("verify", "--offline", "--certs", str(out), "--at", "2026-09-01T00:00:00Z",
               str(REPORT))
    assert late.returncode == 2 and "CRL of ARK-Milan has expired" in late.stderr
    nothing = run("collateral", "--offline", str(REPORT), "-o", str(tmp_path / "x"))
    assert nothing.returncode == 2 and "--offline" in nothing.stderr


def test_trust_simulated_alone_verifies_a_simulated_quote(tmp_path) -> None:
    env = dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "home"))
    nonce = "ab" * 64
    quote = tmp_path / "quote.bin"
    made = run("attest", "--tee", "sgx-sim", "--nonce", nonce, "-o", str(quote), env=env)
    assert made.returncode == 0, made.stderr
    done = run("verify", "--trust-simulated", "--nonce", nonce, str(quote), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accepted: SGX quote [SIMULATED]")
    untrusted = run("verify", str(quote), env=env)
    assert untrusted.returncode == 1
    assert "SIMULATED root: the evidence is simulated; pass --trust-simulated" in \
        untrusted.stdout
    reset = run("sim", "reset", env=env)
    assert reset.returncode == 0, reset.stderr
    stale = run("verify", "--trust-simulated", str(quote), env=env)
    assert stale.returncode == 1
    assert ("PCK certificate chain ends at a simulated root that is no longer this "
            "machine's: the simulated platform was reset since (attestcall sim reset)") in \
        stale.stdout


def test_a_simulated_quote_elsewhere_says_so(tmp_path) -> None:
    """On a machine with no simulated platform, a simulated quote cannot be verified."""
    env = dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "home"))
    quote = tmp_path / "quote.bin"
    assert run("attest", "--tee", "sgx-sim", "--nonce", "00" * 64, "-o", str(quote),
               env=env).returncode == 0
    empty = dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "elsewhere"))
    done = run("verify", "--trust-simulated", str(quote), env=empty)
    assert done.returncode == 2
    assert "is simulated" in done.stderr and "no simulated platform" in done.stderr
