"""attestcall.amd.fetch.kds (fetch_vcek, KdsSource) against a local AMD KDS (127.0.0.1 only)."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from attestcall.amd.fetch.kds import KdsSource, fetch_vcek, vcek_paths
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp
from attestcall.diskcache import Cache
from attestcall.errors import CollateralError
from tests import paths
from tests.clock import Clock
from tests.fakes.collateral_server import CollateralServer, Route

DATA = paths.DATA / "amd"
REPORT = (DATA / "milan_report_v2.bin").read_bytes()
VCEK_DER = (DATA / "milan_report_v2.vcek.der").read_bytes()
ASK_ARK = (DATA / "ask_ark_milan.pem").read_bytes()
CHIP_ID = REPORT[0x1A0:0x1E0].hex()
QUERY = "blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
VCEK_PATH = f"/vcek/v1/Milan/{CHIP_ID}?{QUERY}"
CHAIN_PATH = "/vcek/v1/Milan/cert_chain"
CRL_PATH = "/vcek/v1/Milan/crl"
CRL_DER = (DATA / "crl_milan.der").read_bytes()  # AMD's, valid 2026-06-22 to 2026-08-08
NOW = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
VCEK_EXPIRY = dt.datetime(2030, 4, 3, 19, 23, 43, tzinfo=dt.UTC)  # the VCEK's notAfter
LIMIT = 4 * 1024 * 1024


def load_pems(data: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # serial number 0
        return x509.load_pem_x509_certificates(data)


def load_der(data: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(data)


def expected_bundle(vcek_der: bytes, chain_pem: bytes) -> bytes:
    certs = [load_der(vcek_der), *load_pems(chain_pem)]
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)


@pytest.fixture
def kds() -> Iterator[CollateralServer]:
    with CollateralServer() as server:
        server.routes[VCEK_PATH] = Route(
            VCEK_DER, headers={"Content-Type": "application/x-x509-ca-cert"}
        )
        server.routes[CHAIN_PATH] = Route(
            ASK_ARK, headers={"Content-Type": "application/x-pem-file"}
        )
        server.routes[CRL_PATH] = Route(CRL_DER, headers={"Content-Type": "application/pkix-crl"})
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Cache:
    return Cache(tmp_path / "cache", clock=clock)


def test_milan_vcek_and_chain(kds: CollateralServer, cache: Cache) -> None:
    bundle = fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    assert kds.requests == [VCEK_PATH, CHAIN_PATH]
    assert bundle == expected_bundle(VCEK_DER, ASK_ARK)
    vcek, ask, ark = load_pems(bundle)
    assert vcek.public_bytes(Encoding.DER) == VCEK_DER
    assert [c.subject.rfc4514_string().split(",")[0] for c in (ask, ark)] == [
        "CN=SEV-Milan",
        "CN=ARK-Milan",
    ]


def test_the_bundle_verifies_the_report(kds: CollateralServer, cache: Cache) -> None:
    from attestcall.verifier.api import verify

    bundle = fetch_vcek(kds.url, REPORT, cache=cache)
    verdict = verify(REPORT, technology="snp", certs=bundle, at=NOW)
    assert verdict.accepted, verdict.reasons


def test_evidence_may_carry_a_certificate_table(kds: CollateralServer, cache: Cache) -> None:
    bundle = fetch_vcek(kds.url + "/vcek/v1/", REPORT + bytes(64), cache=cache)
    assert bundle == expected_bundle(VCEK_DER, ASK_ARK)


def test_a_v2_report_tries_milan_then_genoa(kds: CollateralServer, cache: Cache) -> None:
    genoa_path = VCEK_PATH.replace("/Milan/", "/Genoa/")
    kds.routes[genoa_path] = kds.routes.pop(VCEK_PATH)
    kds.routes["/vcek/v1/Genoa/cert_chain"] = Route((DATA / "ask_ark_genoa.pem").read_bytes())
    bundle = fetch_vcek(kds.url, REPORT, cache=cache)
    assert kds.requests == [VCEK_PATH, genoa_path, "/vcek/v1/Genoa/cert_chain"]
    assert bundle == expected_bundle(VCEK_DER, (DATA / "ask_ark_genoa.pem").read_bytes())


def test_no_vcek_anywhere(kds: CollateralServer, cache: Cache) -> None:
    del kds.routes[VCEK_PATH]
    with pytest.raises(CollateralError, match=r"Genoa.*: HTTP 404 \(no such VCEK\)$"):
        fetch_vcek(kds.url, REPORT, cache=cache)
    assert len(kds.requests) == 2


def turin_report() -> bytes:
    report = bytearray(REPORT)
    report[0:4] = (3).to_bytes(4, "little")
    report[0x180:0x188] = bytes([1, 2, 3, 4, 0, 0, 0, 9])  # fmc bl tee snp . . . ucode
    report[0x188:0x18B] = bytes([0x1A, 0x11, 0x00])  # CPUID family, model, stepping
    report[0x1A0:0x1E0] = bytes.fromhex("1e550a8ee5cf9f4d") + bytes(56)
    return bytes(report)


def test_turin_path_has_an_8_byte_hwid_and_fmc_spl(kds: CollateralServer, cache: Cache) -> None:
    path = "/vcek/v1/Turin/1e550a8ee5cf9f4d?blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=09&fmcSPL=01"
    assert vcek_paths(turin_report()) == [path]
    kds.routes[path] = Route((DATA / "turin_vcek.der").read_bytes())
    kds.routes["/vcek/v1/Turin/cert_chain"] = Route((DATA / "ask_ark_turin.pem").read_bytes())
    bundle = fetch_vcek(kds.url, turin_report(), cache=cache)
    assert kds.requests == [path, "/vcek/v1/Turin/cert_chain"]
    assert bundle == expected_bundle(
        (DATA / "turin_vcek.der").read_bytes(), (DATA / "ask_ark_turin.pem").read_bytes()
    )


# ----------------------------------------------------------------------------- KdsSource


def test_the_verifier_asks_the_kds_as_it_goes(kds: CollateralServer, cache: Cache) -> None:
    source = KdsSource(kds.url, cache=cache)
    appraisal = appraise_snp(REPORT, certs=source, at=NOW, arks=amd_arks())
    assert appraisal.problems == []
    assert kds.requests == [VCEK_PATH, CHAIN_PATH, CRL_PATH]
    again = appraise_snp(REPORT, certs=source, at=NOW, arks=amd_arks())
    assert again.problems == [] and kds.requests == [VCEK_PATH, CHAIN_PATH, CRL_PATH]  # cached


def test_kds_source_chain_follows_the_vceks_product_line(kds: CollateralServer,
                                                         cache: Cache) -> None:
    genoa_path = VCEK_PATH.replace("/Milan/", "/Genoa/")
    kds.routes[genoa_path] = kds.routes.pop(VCEK_PATH)
    source = KdsSource(kds.url + "/vcek/v1", cache=cache)
    assert appraise_snp(REPORT, certs=source, at=NOW, arks=amd_arks()).problems == []
    # Milan then Genoa for the VCEK; the chain of the VCEK's own product line (Milan)
    assert kds.requests == [VCEK_PATH, genoa_path, CHAIN_PATH, CRL_PATH]
    assert source.signing_cas(None) == [] and source.arks("Rome") == []


def test_a_kds_crl_of_another_product_is_unusable(kds: CollateralServer, cache: Cache) -> None:
    """KDS answering the Milan CRL path with Genoa's CRL: an error naming the mismatch."""
    from attestcall.amd.sim import snp as snp_sim

    genoa = snp_sim.load_state().chain(snp_sim.product("genoa")).crl()
    kds.routes[CRL_PATH] = Route(genoa.public_bytes(Encoding.DER))
    source = KdsSource(kds.url, cache=cache)
    with pytest.raises(CollateralError, match="the CRL is ARK-Genoa SIMULATED's, for Genoa"):
        appraise_snp(REPORT, certs=source, at=NOW, arks=amd_arks())
    kds.routes[CRL_PATH] = Route(b"not a CRL")
    with pytest.raises(CollateralError, match=r"/vcek/v1/Milan/crl: the answer is not a CRL"):
        appraise_snp(REPORT, certs=KdsSource(kds.url, cache=Cache(cache.directory / "b",
                                                                  clock=cache.clock)),
                     at=NOW, arks=amd_arks())


def test_kds_source_errors_reach_the_caller(kds: CollateralServer, cache: Cache) -> None:
    del kds.routes[VCEK_PATH]
    source = KdsSource(kds.url, cache=cache)
    with pytest.raises(CollateralError, match=r"HTTP 404 \(no such VCEK\)$"):
        appraise_snp(REPORT, certs=source, at=NOW, arks=amd_arks())
    vlek = bytearray(REPORT)
    vlek[0x48] = (vlek[0x48] & ~0x1C) | (1 << 2)  # SIGNING_KEY = 1, the VLEK
    kds.requests.clear()
    with pytest.raises(CollateralError, match="not signed by a VCEK"):
        appraise_snp(bytes(vlek), certs=source, at=NOW, arks=amd_arks())
    masked = bytearray(REPORT)
    masked[0x1A0:0x1E0] = bytes(64)
    with pytest.raises(CollateralError, match="cannot tell which VCEK to fetch"):
        appraise_snp(bytes(masked), certs=source, at=NOW, arks=amd_arks())
    assert kds.requests == []


# ----------------------------------------------------------------------------- caching


def test_second_fetch_comes_from_the_cache(kds: CollateralServer, cache: Cache) -> None:
    first = fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    kds.requests.clear()
    assert fetch_vcek(kds.url, REPORT, cache=cache, product="Milan") == first
    assert kds.requests == []


def test_entries_expire_at_not_after(kds: CollateralServer, cache: Cache, clock: Clock) -> None:
    fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    clock.now = VCEK_EXPIRY - dt.timedelta(seconds=1)
    fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    assert kds.requests == [VCEK_PATH, CHAIN_PATH]
    clock.now = VCEK_EXPIRY  # the VCEK has expired, the ASK and ARK (2045) have not
    fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    assert kds.requests == [VCEK_PATH, CHAIN_PATH, VCEK_PATH]


def test_corrupt_entries_are_refetched(kds: CollateralServer, cache: Cache) -> None:
    fetch_vcek(kds.url, REPORT, cache=cache, product="Milan")
    for entry in cache.directory.iterdir():
        entry.write_bytes(entry.read_bytes()[:40])
    assert fetch_vcek(kds.url, REPORT, cache=cache, product="Milan") == expected_bundle(
        VCEK_DER, ASK_ARK
    )
    assert kds.requests == [VCEK_PATH, CHAIN_PATH] * 2


# ------------------------------------------------------------------------------ errors


def error_of(kds: CollateralServer, cache: Cache, evidence: bytes = REPORT, **kw: object) -> str:
    with pytest.raises(CollateralError) as caught:
        fetch_vcek(kds.url, evidence, cache=cache, product="Milan", **kw)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_server_error(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[VCEK_PATH] = Route(b"busy", status=500, headers={"Retry-After": "0"})
    assert error_of(kds, cache) == (f"{kds.url}{VCEK_PATH}: HTTP 500 Internal Server Error "
                                    "(tried 4 times)")
    assert kds.requests == [VCEK_PATH] * 4


def test_chain_not_found(kds: CollateralServer, cache: Cache) -> None:
    del kds.routes[CHAIN_PATH]
    assert error_of(kds, cache) == f"{kds.url}{CHAIN_PATH}: HTTP 404 Not Found"


def test_garbage_vcek(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[VCEK_PATH].body = b"<html>maintenance</html>"
    assert "the answer is not a VCEK certificate" in error_of(kds, cache)


def test_garbage_chain(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[CHAIN_PATH].body = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    assert error_of(kds, cache).endswith(f"{CHAIN_PATH}: the answer is not PEM certificates")


def test_chain_of_one(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[CHAIN_PATH].body = ASK_ARK[: ASK_ARK.index(b"-----END CERTIFICATE-----") + 26]
    assert "expected the ASK and the ARK, got 1 certificates" in error_of(kds, cache)


def test_chain_in_the_wrong_order(kds: CollateralServer, cache: Cache) -> None:
    ask, ark = load_pems(ASK_ARK)
    kds.routes[CHAIN_PATH].body = ark.public_bytes(Encoding.PEM) + ask.public_bytes(Encoding.PEM)
    assert "not an ASK followed by its ARK" in error_of(kds, cache)


def test_slow_kds_times_out(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[VCEK_PATH].delay = 2.0
    started = time.monotonic()
    assert error_of(kds, cache, timeout=0.25) == f"{kds.url}{VCEK_PATH}: timed out after 0.25 s"
    assert time.monotonic() - started < 1.5


def test_oversized_vcek(kds: CollateralServer, cache: Cache) -> None:
    kds.routes[VCEK_PATH].body = bytes(LIMIT + 1)
    assert error_of(kds, cache).endswith(f"exceeds the {LIMIT}-byte limit")


def test_short_evidence(kds: CollateralServer, cache: Cache) -> None:
    assert "an SEV-SNP report is 1184 bytes" in error_of(kds, cache, REPORT[:100])
    assert kds.requests == []


def test_vlek_signed_report(kds: CollateralServer, cache: Cache) -> None:
    vlek = bytearray(REPORT)
    vlek[0x48] = (vlek[0x48] & ~0x1C) | (1 << 2)  # SIGNING_KEY (bits 4:2) = 1, the VLEK
    assert "not signed by a VCEK" in error_of(kds, cache, bytes(vlek))
    assert kds.requests == []


def test_masked_chip_id(kds: CollateralServer, cache: Cache) -> None:
    masked = bytearray(REPORT)
    masked[0x1A0:0x1E0] = bytes(64)
    assert "cannot tell which VCEK to fetch" in error_of(kds, cache, bytes(masked))
    assert kds.requests == []


def test_cli_verify_with_kds(kds: CollateralServer, tmp_path: Path) -> None:
    env = dict(os.environ, ATTESTCALL_CACHE=str(tmp_path / "cli-cache"))
    command = [sys.executable, "-m", "attestcall", "verify", "--kds", kds.url,
               "--at", "2026-07-01T00:00:00Z", str(DATA / "milan_report_v2.bin")]  # fmt: skip
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("accepted: SEV-SNP report")
    # the second run has the certificates from the cache; the CRL (nextUpdate 2026-08-08)
    # has expired by this machine's clock, so it was never kept
    assert kds.requests == [VCEK_PATH, CHAIN_PATH, CRL_PATH, CRL_PATH]
    assert stat.S_IMODE((tmp_path / "cli-cache").stat().st_mode) == 0o700
