"""The attestation service over HTTP: a real uvicorn on 127.0.0.1, an SQLite database in a
temporary directory, CSRs from simulated SGX, SNP and TDX keeps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestcall import fetch
from attestcall.deploy.identity import attest
from attestcall.deploy.keys import generate_key, spki_der
from attestcall.service import app as service_app
from attestcall.service import csr as csrs
from attestcall.service import result as results
from attestcall.service.app import ROUTES, Settings, create_app
from attestcall.service.ca import ServiceCa
from attestcall.service.serving import ServiceConfig
from attestcall.service.storage import DATABASE_FILE, Storage
from attestcall.service.tls import TlsFiles
from attestcall.tees import registry
from attestcall.verifier.api import verify
from tests.fakes.collateral_server import CollateralServer
from tests.service.helpers import (
    TEES,
    TIMEOUT,
    assert_problem,
    database_away,
    exchange,
    make_csr,
)
from tests.service.test_csr import assert_no_window, cmw, csr_with
from tests.tls_material import HttpsFiles

# ------------------------------------------------------------------- the server


class Running:
    """The service on a free loopback port, uvicorn in a thread (configured as ``serve``
    configures it); ``stop()`` ends it. With ``tls`` it serves HTTPS with that certificate,
    and ``request`` trusts that CA only."""

    def __init__(self, home: Path, *, tls: HttpsFiles | None = None, ca_key_type: str = "p384",
                 **options):
        self.home = home
        self.tls = tls
        # TCP named, as serve's socket is: asyncio then turns Nagle off per connection
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.storage = Storage.open(None, home)
        self.ca = ServiceCa.load_or_create(home, ca_key_type)
        self.settings = Settings(storage=self.storage, ca=self.ca, public_url=self.url,
                                 **options)
        self.app = create_app(self.settings)
        config = ServiceConfig(self.app, log_level="critical", lifespan="on",
                               timeout_keep_alive=1, header_timeout=self.settings.header_timeout,
                               tls=TlsFiles(tls.cert, tls.key) if tls else None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started or not self.thread.is_alive():
                break
            self.thread.join(0.02)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        self.sock.close()
        self.storage.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/pkcs10") -> tuple[int, dict[str, str], bytes]:
        return exchange(self.port, method, path, body, content_type,
                        tls=fetch.https_context(self.tls.ca) if self.tls else None)

    def challenge(self) -> bytes:
        status, headers, body = self.request("GET", "/v1/challenge")
        assert status == 200, body
        assert headers["content-type"].startswith("application/json")
        document = json.loads(body)
        assert set(document) == {"challenge", "expires_at"}
        expires = dt.datetime.fromisoformat(document["expires_at"])
        now = dt.datetime.now(dt.UTC)
        assert now < expires <= now + dt.timedelta(seconds=121)
        return csrs.decode_challenge(document["challenge"])

    def post_csr(self, csr: bytes, content_type: str = "application/pkcs10"):
        return self.request("POST", "/v1/certificate", csr, content_type)


def services(directory: Path) -> Iterator[Callable[..., Running]]:
    """Yield ``start(**settings)``, which starts a service with its home under
    ``directory`` (trust_simulated unless said otherwise); every one started is stopped
    when the generator ends. For fixtures: ``yield from services(tmp_path)``."""
    running: list[Running] = []

    def start(**options) -> Running:
        options.setdefault("trust_simulated", True)
        server = Running(directory / f"service-{len(running)}", **options)
        running.append(server)
        return server

    try:
        yield start
    finally:
        for server in running:
            server.stop()


@pytest.fixture
def serve(tmp_path, keeps):
    """Start a service: ``serve(**settings)``; trust_simulated unless said otherwise."""
    yield from services(tmp_path)


@pytest.fixture
def service(serve) -> Running:
    return serve()


def obtain(service: Running, source, **kw) -> tuple[x509.Certificate, object]:
    csr, key = make_csr(source, service.challenge(), **kw)
    status, headers, body = service.post_csr(csr)
    assert status == 200, body
    assert headers["content-type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(body)
    assert len(chain) == 2
    return chain[0], key


# ------------------------------------------------------------------- issuance


@pytest.mark.parametrize("tee", sorted(TEES))
def test_a_simulated_keep_gets_a_certificate_chaining_to_the_ca(service, keeps, tee):
    challenge = service.challenge()
    csr, key = make_csr(keeps[tee], challenge, pem=(tee == "sgx-sim"))
    status, headers, body = service.post_csr(
        csr, "application/x-pem-file" if tee == "sgx-sim" else "application/pkcs10")
    assert status == 200, body
    assert headers["content-type"] == "application/pem-certificate-chain"
    issued, ca_cert = x509.load_pem_x509_certificates(body)
    assert ca_cert == service.ca.certificate
    issued.verify_directly_issued_by(ca_cert)
    assert spki_der(issued.public_key()) == spki_der(key.public_key())
    request = (x509.load_pem_x509_csr(csr) if csr.startswith(b"-----")
               else x509.load_der_x509_csr(csr))
    assert issued.subject == request.subject
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert dt.timedelta(hours=24) <= lifetime <= dt.timedelta(hours=24, minutes=6)
    points = issued.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == f"{service.url}/v1/crl"
    result = results.from_certificate(issued)
    assert result is not None
    assert result.technology_name == TEES[tee]
    assert result.technology == registry().by_name(TEES[tee]).technology
    assert len(result.measurement) in (32, 48)
    assert result.policy_digest == results.policy_digest(None)
    record = service.storage.certificate(issued.serial_number)
    assert record is not None and record.der == issued.public_bytes(serialization.Encoding.DER)
    assert record.measurement == result.measurement.hex()
    (entry,) = service.storage.audit_log()
    assert (entry.outcome, entry.peer, entry.technology, entry.measurement, entry.serial) == (
        "accepted", "127.0.0.1", TEES[tee], result.measurement.hex(),
        format(issued.serial_number, "x"))
    # the same challenge never serves twice
    again, _ = make_csr(keeps[tee], challenge)
    document = assert_problem(*service.post_csr(again), 403)
    assert "challenge" in document["detail"]


def test_the_lifetime_and_the_policy_digest_are_the_services(serve, keeps, tmp_path):
    policy = b"[sgx]\nallow_debug = false\n"
    service = serve(lifetime=dt.timedelta(minutes=90), policy_bytes=policy)
    issued, _ = obtain(service, keeps["sgx-sim"])
    assert issued.not_valid_after_utc - issued.not_valid_before_utc <= dt.timedelta(minutes=96)
    assert issued.not_valid_after_utc - issued.not_valid_before_utc >= dt.timedelta(minutes=90)
    assert results.from_certificate(issued).policy_digest == results.policy_digest(policy)


# ------------------------------------------------------------------- refusals


def test_unknown_and_expired_challenges_are_refused(service, keeps):
    unknown, _ = make_csr(keeps["sgx-sim"], os.urandom(32))
    document = assert_problem(*service.post_csr(unknown), 403)
    assert "unknown, expired or already used" in document["detail"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    expired, _ = service.storage.new_challenge(now=past)
    late, _ = make_csr(keeps["sgx-sim"], expired)
    document = assert_problem(*service.post_csr(late), 403)
    assert "unknown, expired or already used" in document["detail"]


def test_evidence_bound_to_another_key_or_challenge_is_refused(service, keeps):
    other = generate_key("p384")
    csr, _ = make_csr(keeps["snp-sim"], service.challenge(), bind_key=other)
    document = assert_problem(*service.post_csr(csr), 403)
    assert "not bound to this request" in document["detail"]
    csr, _ = make_csr(keeps["tdx-sim"], service.challenge(), bind_challenge=os.urandom(32))
    assert "not bound" in assert_problem(*service.post_csr(csr), 403)["detail"]


def test_a_policy_refusal_lists_its_reasons(serve, keeps):
    service = serve(policy_bytes=b'[sgx]\nmrenclave = ["' + b"ab" * 32 + b'"]\n')
    csr, _ = make_csr(keeps["sgx-sim"], service.challenge())
    document = assert_problem(*service.post_csr(csr), 403)
    assert any("mrenclave" in r.lower() for r in document["reasons"])
    (entry,) = service.storage.audit_log()
    assert entry.outcome == "refused" and entry.technology == "sgx"
    assert entry.measurement and len(entry.measurement) == 64
    assert list(entry.reasons) == document["reasons"]
    # another technology is not constrained by the [sgx] table
    obtain(service, keeps["snp-sim"])


def test_simulated_evidence_is_refused_without_trust_simulated(serve, keeps):
    service = serve(trust_simulated=False)
    csr, _ = make_csr(keeps["snp-sim"], service.challenge())
    document = assert_problem(*service.post_csr(csr), 403)
    assert any("simulat" in r.lower() for r in document["reasons"])


def test_a_collateral_outage_is_503_and_a_missing_item_is_403(serve, keeps):
    """Real (not simulated) verification of an SGX quote needs Intel collateral from the
    PCCS: a PCCS that cannot be reached is the service's trouble (503, Retry-After, try
    again), one that answers 404 is a refusal (403). Both are audited."""
    with CollateralServer() as gone:
        down = gone.url
    with CollateralServer() as empty:  # every path 404
        for pccs, expected in ((down, 503), (empty.url, 403)):
            service = serve(trust_simulated=False, pccs=pccs)
            csr, _ = make_csr(keeps["sgx-sim"], service.challenge())
            status, headers, body = service.post_csr(csr)
            document = assert_problem(status, headers, body, expected)
            if expected == 503:
                assert document["type"].endswith("/collateral-unavailable")
                assert int(headers["retry-after"]) > 0
                assert "cannot connect" in document["detail"]
            else:
                assert "retry-after" not in headers
                assert "404" in document["detail"]
            [record] = service.storage.audit_log()
            assert record.outcome == "refused" and record.technology == "sgx"
            assert record.reasons == tuple(document["reasons"])
        assert empty.requests  # the service did ask the live PCCS


def test_a_denied_measurement_is_refused_and_its_serials_are_in_the_crl(service, keeps):
    first, _ = obtain(service, keeps["sgx-sim"])
    second, _ = obtain(service, keeps["sgx-sim"])
    kept, _ = obtain(service, keeps["tdx-sim"])
    status, headers, body = service.request("GET", "/v1/crl")
    assert status == 200 and headers["content-type"] == "application/pkix-crl"
    assert len(x509.load_der_x509_crl(body)) == 0
    measurement = results.from_certificate(first).measurement.hex()
    revoked = service.storage.deny_measurement(measurement, "test")
    assert sorted(revoked) == sorted(format(c.serial_number, "x") for c in (first, second))
    csr, _ = make_csr(keeps["sgx-sim"], service.challenge())
    document = assert_problem(*service.post_csr(csr), 403)
    assert "deny-list" in document["detail"]
    refused = service.storage.audit_log()[-1]  # signed, refused in the transaction, not kept
    assert (refused.outcome, refused.measurement, refused.serial) == ("refused", measurement, None)
    assert refused.technology == "sgx" and refused.tcb_status is not None
    assert len(service.storage.audit_log()) == 4
    status, _, body = service.request("GET", "/v1/crl")
    crl = x509.load_der_x509_crl(body)
    assert crl.is_signature_valid(service.ca.certificate.public_key())
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    assert crl.next_update_utc - crl.last_update_utc <= dt.timedelta(hours=1)
    assert kept.serial_number not in {r.serial_number for r in crl}
    # a revoked serial alone
    assert service.storage.revoke_serial(kept.serial_number, "keyCompromise")
    crl = x509.load_der_x509_crl(service.request("GET", "/v1/crl")[2])
    assert kept.serial_number in {r.serial_number for r in crl}


def test_garbage_and_truncated_requests_are_bad_requests(service, keeps):
    csr, _ = make_csr(keeps["sgx-sim"], service.challenge())
    for body in (b"", b"garbage", csr[: len(csr) // 2], csr[:-1], b"\x30\x82\xff\xff",
                 b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"):
        document = assert_problem(*service.post_csr(body), 400)
        assert document["title"] == "Bad Request"
    # a CSR whose signature fails
    tampered = bytearray(csr)
    tampered[-3] ^= 1
    assert_problem(*service.post_csr(bytes(tampered)), 400)
    # the real one still works afterwards: garbage never consumed its challenge
    assert service.post_csr(csr)[0] == 200


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_body_over_one_mebibyte_is_refused_without_being_read(service):
    # Content-Length says 2 MiB, and only 16 KiB ever come: the answer cannot wait for it.
    head = (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkcs10\r\n"
            b"Content-Length: %d\r\n\r\n" % (2 << 20))
    answer = _raw(service.port, head + b"\0" * 16384)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer
    # without a length (chunked), refused as soon as the limit is passed
    chunk = b"\0" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17))
    head = (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/pkcs10\r\n\r\n")
    answer = _raw(service.port, head + body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    reasons = [list(e.reasons) for e in service.storage.audit_log()]
    assert len(reasons) == 2 and all("limit" in r[0] or "exceeds" in r[0] for r in reasons)


def test_a_vanished_database_answers_503_then_recovers(service, keeps):
    obtain(service, keeps["sgx-sim"])
    challenge = service.challenge()
    csr, _ = make_csr(keeps["sgx-sim"], challenge)
    with database_away(service.home):
        status, _, body = service.request("GET", "/healthz")
        assert status == 503
        assert_problem(*service.request("GET", "/v1/challenge"), 503)
        assert_problem(*service.post_csr(csr), 503)
        assert_problem(*service.request("GET", "/v1/crl"), 503)
    assert service.request("GET", "/healthz")[0] == 200
    # the challenge was never consumed: the same CSR now succeeds
    status, _, body = service.post_csr(csr)
    assert status == 200, body
    assert [e.outcome for e in service.storage.audit_log()] == ["accepted", "accepted"]


def test_every_attempt_is_audited(service, keeps):
    obtain(service, keeps["snp-sim"])
    service.post_csr(b"garbage")
    csr, _ = make_csr(keeps["sgx-sim"], os.urandom(32))
    service.post_csr(csr)
    log = service.storage.audit_log()
    assert [e.outcome for e in log] == ["accepted", "refused", "refused"]
    assert all(e.peer == "127.0.0.1" and e.kind == "certificate" for e in log)
    assert log[0].serial and log[0].technology == "snp" and log[0].reasons == ()
    assert log[1].technology is None and log[1].serial is None and log[1].reasons
    assert log[2].technology == "sgx" and "challenge" in log[2].reasons[0]


def test_metrics_healthz_and_openapi(service, keeps):
    obtain(service, keeps["tdx-sim"])
    service.post_csr(b"junk")
    service.request("GET", "/no/such/path")
    status, headers, body = service.request("GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = service.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'attestcall_service_requests_total{path="/v1/certificate",status="200"} 1.0' in text
    assert 'attestcall_service_requests_total{path="/v1/certificate",status="400"} 1.0' in text
    assert 'attestcall_service_requests_total{path="other",status="404"} 1.0' in text
    assert 'attestcall_service_verdicts_total{outcome="accepted",technology="tdx"} 1.0' in text
    assert 'attestcall_service_verdicts_total{outcome="refused",technology="unknown"} 1.0' \
        in text
    assert 'attestcall_service_request_seconds_count{path="/v1/certificate"} 2.0' in text
    status, _, body = service.request("GET", "/openapi.json")
    document = json.loads(body)
    assert document["openapi"].startswith("3.")
    assert set(ROUTES) <= set(document["paths"])
    assert {r.path for r in service.app.routes} == set(document["paths"])
    assert "post" in document["paths"]["/v1/certificate"]
    assert set(document["paths"]["/v1/certificate"]["post"]["responses"]) == {
        "200", "400", "403", "408", "413", "503"}
    status, _, body = service.request("GET", "/v1/ca")
    assert status == 200 and body == service.ca.pem()


def test_unknown_paths_and_methods_are_problem_documents(service):
    assert_problem(*service.request("GET", "/nothing"), 404)
    status, headers, body = service.request("GET", "/v1/certificate")
    assert_problem(status, headers, body, 405)
    assert headers["allow"] == "POST"
    text = service.request("GET", "/metrics")[2].decode()
    assert 'attestcall_service_requests_total{path="other",status="404"} 1.0' in text
    assert 'attestcall_service_requests_total{path="/v1/certificate",status="405"} 1.0' in text


def test_an_internal_error_is_a_500_problem_without_internals(service, keeps, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service.ca, "issue", broken)
    csr, _ = make_csr(keeps["sgx-sim"], service.challenge())
    status, headers, body = service.post_csr(csr)
    document = assert_problem(status, headers, body, 500)
    assert "secret internal detail" not in body.decode()
    assert "RuntimeError" not in body.decode()
    assert document["title"] == "Internal Server Error"
    monkeypatch.undo()
    assert service.request("GET", "/healthz")[0] == 200  # still serving
    text = service.request("GET", "/metrics")[2].decode()  # and the 500 was counted
    assert 'attestcall_service_requests_total{path="/v1/certificate",status="500"} 1.0' in text


# ------------------------------------------------------------------- SEV key material


def test_sev_key_material_never_reaches_the_audit_log(service, monkeypatch):
    """A CSR carrying an SEV keep's delivered key (technology 1) is refused, and no window
    of the key is in the answer or the audit log."""
    sev_key = generate_key("p384").private_bytes(serialization.Encoding.DER,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    key = generate_key("p256")
    answers = []
    for extensions in (
            [cmw("application/vnd.attestcall.evidence.sev-key", sev_key)],
            [x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.58270.1.2"),
                                        sev_key)],
            [cmw(registry().by_id(2).media_type, sev_key)]):
        body = csr_with(key, extensions,
                        challenge=csrs.encode_challenge(service.challenge()).encode())
        answers.append(service.post_csr(body))
    # a CSR that reads as technology 1: refused by name
    monkeypatch.setattr(csrs, "evidence_from_extensions", lambda *a, **k: (1, sev_key))
    body = csr_with(key, [cmw(registry().by_id(2).media_type, b"")],
                    challenge=csrs.encode_challenge(service.challenge()).encode())
    answers.append(service.post_csr(body))
    monkeypatch.undo()
    statuses = [a[0] for a in answers]
    assert all(s in (400, 403) for s in statuses), statuses
    document = assert_problem(*answers[-1], 403)
    assert "technology 1 is pre-attestation" in document["detail"]
    log = service.storage.audit_log()
    assert len(log) == len(answers) and all(e.outcome == "refused" for e in log)
    for _status, _headers, body in answers:
        assert_no_window(sev_key, Exception(body.decode("latin-1")))
    assert_no_window(sev_key, Exception(json.dumps([e.as_json() for e in log])))
    for name in os.listdir(service.home):
        if name.startswith(DATABASE_FILE):
            assert_no_window(sev_key, Exception((service.home / name).read_bytes()
                                                .decode("latin-1")))


def test_simulated_collateral_is_made_once_a_minute_not_per_request(tmp_path, keeps,
                                                                     monkeypatch):
    """With --trust-simulated the simulators' collateral is made (four signatures) and
    loaded once, then reused for every request for SIMULATED_COLLATERAL_TTL seconds."""
    storage = Storage.open(None, tmp_path)
    try:
        settings = Settings(storage=storage, ca=ServiceCa.load_or_create(tmp_path),
                            public_url="http://x", trust_simulated=True)
        service = service_app.Service(settings, service_app.Metrics())
        made: list[bytes] = []
        sgx = registry().by_name("sgx")
        counted = dataclasses.replace(
            sgx, simulated_collateral=lambda e: made.append(e) or sgx.simulated_collateral(e))
        _, evidence = attest(keeps["sgx-sim"], bytes(64))
        first = service._collateral(counted, evidence)["collateral"]
        assert not isinstance(first, (str, bytes))  # loaded, not JSON to parse again
        assert service._collateral(counted, evidence)["collateral"] is first
        assert len(made) == 1
        monkeypatch.setattr(service_app, "SIMULATED_COLLATERAL_TTL", 0.0)
        assert service._collateral(counted, evidence)["collateral"] is not first
        assert len(made) == 2
        verdict = verify(evidence, technology="sgx", nonce=bytes(64), trust_simulated=True,
                         **service._collateral(sgx, evidence))
        assert verdict.accepted, verdict.reasons
    finally:
        storage.close()


def test_settings_refuse_a_broken_policy(tmp_path):
    storage = Storage.open(None, tmp_path)
    ca = ServiceCa.load_or_create(tmp_path)
    try:
        with pytest.raises(service_app.PolicyError):
            Settings(storage=storage, ca=ca, public_url="http://x", policy_bytes=b"[nope]\n")
        with pytest.raises(service_app.PolicyError):
            Settings(storage=storage, ca=ca, public_url="http://x", policy_bytes=b"[[[")
        for seconds in (59, 7 * 86400 + 1):
            with pytest.raises(service_app.UsageError, match="from 1 minute to 7 days"):
                Settings(storage=storage, ca=ca, public_url="http://x",
                         token_lifetime=dt.timedelta(seconds=seconds))
        for lifetime in service_app.TOKEN_LIFETIMES:  # the bounds themselves are allowed
            Settings(storage=storage, ca=ca, public_url="http://x", token_lifetime=lifetime)
    finally:
        storage.close()


def test_a_collateral_file_given_for_a_technology_is_what_its_verifier_gets(tmp_path, keeps):
    """``serve --collateral snp=FILE``: the file's content goes to the SNP verifier for
    every report (here unusable certificates, so a genuine simulated report is refused for
    them), the other technologies keep theirs; a technology that takes no file, or a file
    that cannot be read, stops the service from starting."""
    certs = tmp_path / "certs.pem"
    certs.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    storage = Storage.open(None, tmp_path)
    try:
        files = service_app.read_collateral_files({"snp": str(certs)})
        assert files == {"snp": certs.read_bytes()}
        settings = Settings(storage=storage, ca=ServiceCa.load_or_create(tmp_path),
                            public_url="http://x", trust_simulated=True,
                            collateral_files=files)
        service = service_app.Service(settings, service_app.Metrics())
        snp = registry().by_name("snp")
        _, report = attest(keeps["snp-sim"], bytes(64))
        given = service._collateral(snp, report)
        assert given == {"collateral": certs.read_bytes()}
        with pytest.raises(service_app.CollateralError):
            verify(report, technology="snp", nonce=bytes(64), trust_simulated=True, **given)
        sgx = registry().by_name("sgx")
        _, quote = attest(keeps["sgx-sim"], bytes(64))
        assert not isinstance(service._collateral(sgx, quote)["collateral"], bytes)
    finally:
        storage.close()
    with pytest.raises(service_app.UsageError, match="no such technology takes a collateral "
                       "file"):
        service_app.read_collateral_files({"none": str(certs)})
    with pytest.raises(service_app.UsageError, match="no such technology"):
        service_app.read_collateral_files({"nope": str(certs)})
    with pytest.raises(service_app.CollateralError, match="cannot read the SNP collateral"):
        service_app.read_collateral_files({"snp": str(tmp_path / "missing.pem")})


def test_serve_refuses_a_malformed_collateral_option(env, tmp_path):
    from tests.service.helpers import cli

    done = cli(env, "service", "serve", "--home", str(tmp_path), "--collateral", "snp")
    assert done.returncode == 2 and b"'snp' is not TECH=FILE" in done.stderr
    done = cli(env, "service", "serve", "--home", str(tmp_path), "--listen", "127.0.0.1:0",
               "--collateral", f"snp={tmp_path / 'missing.pem'}")
    assert done.returncode == 1 and b"cannot read the SNP collateral" in done.stderr  # as --policy
