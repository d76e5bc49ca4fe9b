"""``deploy --ca``: a keep certified by the attestation service's CA, judged by that CA, its
CRL and the tenant's policy over the result; every refusal sends zero workload bytes."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestcall import verify
from attestcall.deploy import ca_trust, deploy
from attestcall.deploy.ca_trust import CaTrust, Untrusted, check_result
from attestcall.deploy.identity import KeepIdentity, make_identity
from attestcall.deploy.keys import binding_nonce
from attestcall.deploy.tenant import DeployRefused, simulated_collateral
from attestcall.keep.platforms import open_keep
from attestcall.service import result as results
from attestcall.service.ca import ServiceCa
from attestcall.verifier.policy import Policy
from tests import paths
from tests.deploy.conftest import expected_stdout, running_keep, settled
from tests.service.helpers import edited, verdict_for

TEE = "sgx-sim"
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attestcall keep")])
HOUR = dt.timedelta(hours=1)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CrlServer:
    """A tiny HTTP server on 127.0.0.1 serving ``self.crl`` (DER) at /v1/crl."""

    def __init__(self) -> None:
        self.crl = b""
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.requests += 1
                if self.path != "/v1/crl" or not owner.crl:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(owner.crl)))
                self.end_headers()
                self.wfile.write(owner.crl)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host}:{port}/v1/crl"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def crl_server() -> Iterator[CrlServer]:
    server = CrlServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def keep_material() -> tuple[KeepIdentity, results.AttestationResult]:
    """A simulated keep's own identity (key and bound evidence) and the result a service
    would certify for it, from a real verdict."""
    with open_keep(TEE, b"") as keep:
        identity = make_identity(keep.source)
    tee_name = "sgx"
    verdict = verify(identity.evidence, technology=tee_name,
                     collateral=simulated_collateral(tee_name, identity.evidence),
                     nonce=binding_nonce(identity.private_key.public_key()),  # type: ignore[arg-type]
                     trust_simulated=True)
    assert verdict.accepted, verdict.reasons
    return identity, results.from_verdict(verdict, None)


def certified(ca: ServiceCa, material, crl_url: str, *, now: dt.datetime | None = None,
              lifetime: dt.timedelta = HOUR) -> KeepIdentity:
    identity, result = material
    cert = ca.issue(identity.private_key.public_key(), SUBJECT, lifetime=lifetime,
                    result=result, crl_url=crl_url, now=now or utc_now())
    return KeepIdentity(identity.private_key, cert, identity.technology, identity.evidence)


def publish_crl(ca: ServiceCa, server: CrlServer, revoked=(), *, signer: ServiceCa | None = None,
                now: dt.datetime | None = None, next_update: dt.timedelta = HOUR) -> None:
    now = now or utc_now()
    crl = (signer or ca).crl(list(revoked), now=now, next_update=now + next_update)
    server.crl = crl.public_bytes(Encoding.DER)


def refused(address, workload, ca, **options) -> DeployRefused:
    with pytest.raises(DeployRefused) as caught:
        deploy(address, workload, [], ca=ca, stdout=io.BytesIO(), stderr=io.BytesIO(),
               **options)
    return caught.value


@pytest.fixture
def ca(tmp_path) -> ServiceCa:
    return ServiceCa.load_or_create(tmp_path / "service")


# ------------------------------------------------------------------------ accepted


def test_a_certified_keep_is_accepted_and_runs_the_workload(ca, crl_server, keep_material,
                                                            workload, tmp_path):
    publish_crl(ca, crl_server)
    identity = certified(ca, keep_material, crl_server.url)
    mrenclave = keep_material[1].measurement.hex()
    with running_keep(TEE, keep_identity=identity) as server:
        out = io.BytesIO()
        status = deploy(server.address, workload, [], ca=tmp_path / "service" / "ca.pem",
                        policy={"sgx": {"mrenclave": [mrenclave]}},
                        stdout=out, stderr=io.BytesIO())
        assert status == 42
        # The workload's own evidence comes from the serving keep (its size may differ by
        # a byte or two from the identity's: DER ECDSA signatures vary in length).
        assert out.getvalue().startswith(expected_stdout(TEE, 0).split(b"evidence:")[0])
        assert b"evidence: 0 bytes" not in out.getvalue()
        assert settled(server).workload_bytes > 0
    assert crl_server.requests == 1


def test_the_crl_is_cached_until_its_next_update(ca, crl_server, keep_material, workload):
    publish_crl(ca, crl_server)
    identity = certified(ca, keep_material, crl_server.url)
    with running_keep(TEE, keep_identity=identity) as server:
        for _ in range(2):
            assert deploy(server.address, workload, [], ca=ca.certificate,
                          stdout=io.BytesIO(), stderr=io.BytesIO()) == 42
    assert crl_server.requests == 1
    # On disk too: with the memory cache emptied and the CRL gone from the server, the
    # verified CRL on disk still answers until its next update.
    ca_trust._MEMORY.clear()
    crl_server.crl = b""
    assert CaTrust(ca.certificate).check(identity.certificate_der) == keep_material[1]
    assert crl_server.requests == 1
    # Past its next update (and the leaf's notAfter) nothing cached is used.
    later = CaTrust(ca.certificate, clock=lambda: utc_now() + 2 * HOUR)
    with pytest.raises(Untrusted) as caught:
        later.check(identity.certificate_der)
    assert crl_server.requests == 2
    text = " ".join(caught.value.reasons)
    assert "expired" in text and "cannot get the CA's CRL" in text


# ------------------------------------------------------------------------ refused


def test_a_certificate_from_another_ca_is_refused(ca, crl_server, keep_material, workload,
                                                  tmp_path):
    other = ServiceCa.load_or_create(tmp_path / "other")
    publish_crl(other, crl_server)
    identity = certified(other, keep_material, crl_server.url)
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert "not issued by the trusted CA" in " ".join(caught.reasons)
        assert settled(server).workload_bytes == 0
    assert crl_server.requests == 0


def test_an_expired_certificate_is_refused(ca, crl_server, keep_material, workload):
    publish_crl(ca, crl_server)
    identity = certified(ca, keep_material, crl_server.url,
                         now=utc_now() - dt.timedelta(days=2))
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("expired" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_a_revoked_certificate_is_refused(ca, crl_server, keep_material, workload):
    identity = certified(ca, keep_material, crl_server.url)
    publish_crl(ca, crl_server, [(identity.certificate.serial_number, utc_now(), None)])
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("is revoked" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_an_unreachable_crl_is_refused(ca, keep_material, workload):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    identity = certified(ca, keep_material, f"http://127.0.0.1:{port}/v1/crl")
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("cannot get the CA's CRL" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_a_missing_crl_is_refused(ca, crl_server, keep_material, workload):
    identity = certified(ca, keep_material, crl_server.url)  # the server has no CRL: 404
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("HTTP 404" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_a_crl_signed_by_another_key_is_refused(ca, crl_server, keep_material, workload,
                                                tmp_path):
    identity = certified(ca, keep_material, crl_server.url)
    publish_crl(ca, crl_server, signer=ServiceCa.load_or_create(tmp_path / "other"))
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("is not the trusted CA's" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_a_stale_crl_is_refused(ca, crl_server, keep_material, workload):
    identity = certified(ca, keep_material, crl_server.url)
    publish_crl(ca, crl_server, now=utc_now() - 3 * HOUR)  # next update 2 hours ago
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate)
        assert any("stale" in r for r in caught.reasons), caught.reasons
        assert settled(server).workload_bytes == 0


def test_a_measurement_outside_the_policy_is_refused(ca, crl_server, keep_material, workload):
    publish_crl(ca, crl_server)
    identity = certified(ca, keep_material, crl_server.url)
    with running_keep(TEE, keep_identity=identity) as server:
        caught = refused(server.address, workload, ca.certificate,
                         policy={"sgx": {"mrenclave": ["00" * 32]}})
        assert any("mrenclave" in r and "allow-list" in r for r in caught.reasons), \
            caught.reasons
        assert settled(server).workload_bytes == 0


def test_deploy_without_ca_still_judges_the_evidence(ca, crl_server, keep_material, workload):
    """Without --ca the tenant judges evidence as before: a service certificate carries
    none (no CMW extension), so it is refused, and the CRL is never asked for."""
    publish_crl(ca, crl_server)
    identity = certified(ca, keep_material, crl_server.url)
    with running_keep(TEE, keep_identity=identity) as server:
        with pytest.raises(DeployRefused):
            deploy(server.address, workload, [], trust_simulated=True,
                   stdout=io.BytesIO(), stderr=io.BytesIO())
        assert settled(server).workload_bytes == 0
    assert crl_server.requests == 0


# ------------------------------------------------------------------ the result's policy


def test_check_result_what_a_result_can_and_cannot_tell(keep_material):
    _, result = keep_material
    mrenclave = result.measurement.hex()
    assert check_result(result, Policy()) == []
    assert check_result(result, Policy.parse({"sgx": {"mrenclave": [mrenclave]}})) == []
    # allow_debug is not knowable from a result and is not invented either way.
    assert check_result(result, Policy.parse({"sgx": {"allow_debug": False}})) == []
    # A constraint on a claim the result does not carry is refused, not ignored.
    reasons = check_result(result, Policy.parse({"sgx": {"mrsigner": ["11" * 32]}}))
    assert len(reasons) == 1 and "mrsigner cannot be checked" in reasons[0]
    # TCB status outside accept_tcb_status, as verify would refuse it.
    stale = edited(result, attestcall_tcb_status="OutOfDate")
    assert any("OutOfDate is not accepted" in r for r in check_result(stale, Policy()))
    allowed = Policy.parse({"sgx": {"accept_tcb_status": ["UpToDate", "OutOfDate"]}})
    assert check_result(stale, allowed) == []
    assert check_result(edited(result, attestcall_tcb_status=None), Policy())  # none: refused
    advised = edited(result, attestcall_advisories=["INTEL-SA-00001"])
    assert check_result(advised, Policy.parse({"sgx": {"refuse_advisories":
                                                       ["INTEL-SA-00001"]}}))
    # No result, or a technology named wrongly.
    assert check_result(None, Policy())
    assert check_result(edited(result, "tdx"), Policy())
    none = results.from_verdict(verdict_for("none", {}, tcb_status=None, advisories=[]), None)
    assert check_result(none, Policy())
    assert check_result(none, Policy.parse({"none": {"allow": True}})) == []


# ------------------------------------------------------------------------ the CLI


def test_cli_deploy_with_ca(ca, crl_server, keep_material, tmp_path):
    publish_crl(ca, crl_server)
    good = certified(ca, keep_material, crl_server.url)
    revoked = certified(ca, keep_material, crl_server.url)
    publish_crl(ca, crl_server, [(revoked.certificate.serial_number, utc_now(), None)])
    ca_pem = tmp_path / "service" / "ca.pem"
    hello = paths.REPO / "examples" / "hello.wat"

    def run(identity: KeepIdentity) -> subprocess.CompletedProcess[str]:
        with running_keep(TEE, keep_identity=identity) as server:
            host, port = server.address
            done = subprocess.run([sys.executable, "-m", "attestcall", "deploy", "--keep",
                                   f"{host}:{port}", "--ca", str(ca_pem), str(hello)],
                                  capture_output=True, text=True, timeout=120)
            settled(server)
            return done

    accepted = run(good)
    assert accepted.returncode == 0, accepted.stderr
    refusal = run(revoked)
    assert refusal.returncode == 125
    assert "nothing was sent" in refusal.stderr and "revoked" in refusal.stderr
