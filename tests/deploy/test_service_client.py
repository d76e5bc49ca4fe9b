"""``keep serve --service URL``: a keep whose TLS certificate comes from a real attestation
service (uvicorn on 127.0.0.1, simulated roots trusted), refusals, an unreachable service,
SEV refused before any request, and renewal without dropping connections."""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa

from attestcall.cli import main
from attestcall.deploy import deploy, protocol, service_client
from attestcall.deploy.keys import spki_der
from attestcall.deploy.server import KeepServer, Renewal
from attestcall.keep.platforms import open_keep
from attestcall.service import result as results
from attestcall.tls import TlsSocket, client_context
from tests.deploy.conftest import read_frames
from tests.service.test_app import services
from tests.tls_material import https_files

MLDSA65_OID = "2.16.840.1.101.3.4.3.18"
TIMEOUT = 60.0  # seconds any one socket or process operation may take
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def service(tmp_path) -> Iterator:
    yield from services(tmp_path)


def peer_chain(address: tuple[str, int]) -> list[x509.Certificate]:
    """The chain a TLS client is served (leaf first)."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock, \
            TlsSocket.connect(client_context(), sock, TIMEOUT) as tls:
        return tls.peer_chain()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keep_process(url: str, tee: str = "sgx-sim",
                 *extra: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    """``attestcall keep serve --service URL [EXTRA...]`` in a subprocess, once it listens."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "attestcall", "keep", "serve", "--tee", tee, "--service", url,
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    if "listening on" not in line:
        process.kill()
        _, err = process.communicate(timeout=TIMEOUT)
        pytest.fail(f"the keep did not start: {line!r} {err!r}")
    return process, ("127.0.0.1", port)


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    _, err = process.communicate(timeout=TIMEOUT)
    return err


# ----------------------------------------------------------------------- issuance


def test_keep_serves_the_chain_the_service_issued(service, workload):
    running = service()
    process, address = keep_process(running.url)
    try:
        chain = peer_chain(address)
        # and a tenant trusting the service CA (deploy --ca) runs its workload there
        out = io.BytesIO()
        status = deploy(address, workload, [], ca=running.ca.certificate, stdout=out,
                        stderr=io.BytesIO())
    finally:
        stop(process)
    assert status == 42 and b"hello from the keep" in out.getvalue()
    assert len(chain) == 2
    leaf, ca = chain
    assert ca == running.ca.certificate
    leaf.verify_directly_issued_by(running.ca.certificate)
    result = results.from_certificate(leaf)
    assert result is not None and result.technology_name == "sgx"
    log = running.storage.audit_log()
    assert [r.outcome for r in log] == ["accepted"]
    assert log[0].serial is not None and int(log[0].serial, 16) == leaf.serial_number


def test_an_mldsa65_ca_certifies_an_mldsa65_keep_end_to_end(service, workload):
    """``--ca-key-type mldsa65``: the CA certificate, the keep's issued certificate and the
    CRL are ML-DSA-65-signed; the keep (an ML-DSA-65 key of its own) serves the chain over
    X25519MLKEM768 and a tenant trusting the CA (its CRL fetched and checked) deploys."""
    running = service(ca_key_type="mldsa65")
    ca = running.ca.certificate
    assert ca.signature_algorithm_oid.dotted_string == MLDSA65_OID
    process, address = keep_process(running.url, "sgx-sim", "--key-type", "mldsa65")
    seen: list = []
    try:
        chain = peer_chain(address)
        out = io.BytesIO()
        status = deploy(address, workload, [], ca=ca, stdout=out, stderr=io.BytesIO(),
                        on_trusted=seen.append, key_type="mldsa65")
    finally:
        stop(process)
    assert status == 42 and b"hello from the keep" in out.getvalue()
    leaf, served_ca = chain
    assert served_ca == ca
    assert leaf.signature_algorithm_oid.dotted_string == MLDSA65_OID
    assert isinstance(leaf.public_key(), mldsa.MLDSA65PublicKey)
    leaf.verify_directly_issued_by(ca)
    (connection,) = seen
    assert (connection.group, connection.key_type) == ("X25519MLKEM768", "mldsa65")
    status, _, body = running.request("GET", "/v1/crl")
    crl = x509.load_der_x509_crl(body)
    assert status == 200 and crl.signature_algorithm_oid.dotted_string == MLDSA65_OID
    assert crl.is_signature_valid(ca.public_key())


def test_obtain_identity_checks_the_chain_is_for_our_key(service):
    running = service()
    with open_keep("sgx-sim", b"") as keep:
        identity = service_client.obtain_identity(keep.source, running.url)
    assert identity.chain == (running.ca.certificate,)
    assert spki_der(identity.certificate.public_key()) == \
        spki_der(identity.private_key.public_key())
    other = service_client.generate_key("p256")
    body = identity.pem().split(b"-----BEGIN PRIVATE KEY-----")[0]
    with pytest.raises(service_client.IssuedChainInvalid, match="not for the keep's key"):
        service_client.check_chain(body, other)
    with pytest.raises(service_client.IssuedChainInvalid, match="does not chain"):
        service_client.check_chain(
            identity.certificate.public_bytes(service_client.serialization.Encoding.PEM) * 2,
            identity.private_key)


# ----------------------------------------------------------------------- refusals


def test_a_refusing_service_makes_keep_serve_exit_with_its_reason(service, capsys):
    running = service(policy_bytes=b'[sgx]\nmrenclave = ["' + b"ab" * 32 + b'"]\n')
    status = main(["keep", "serve", "--tee", "sgx-sim", "--service", running.url,
                   "--listen", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert status != 0
    assert "refused the keep (HTTP 403)" in err
    assert "mrenclave" in err.lower()
    assert "listening" not in err
    assert [r.outcome for r in running.storage.audit_log()] == ["refused"]


def test_an_unreachable_service_makes_keep_serve_exit_non_zero(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    status = main(["keep", "serve", "--tee", "sgx-sim", "--service", url,
                   "--listen", "127.0.0.1:0"])
    captured = capsys.readouterr()
    assert status != 0
    assert "cannot reach the attestation service" in captured.err
    assert "listening" not in captured.out


def test_sev_with_a_service_is_refused_in_one_line_before_any_request(service, capsys):
    running = service()
    status = main(["keep", "serve", "--tee", "sev-sim", "--service", running.url,
                   "--listen", "127.0.0.1:0"])
    captured = capsys.readouterr()
    assert status != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "pre-attestation" in lines[0], captured.err
    assert "listening" not in captured.out
    assert running.storage.audit_log() == []
    with open_keep("sev-sim", b"") as keep:
        with pytest.raises(service_client.PreAttestationKeep):
            service_client.obtain_identity(keep.source, running.url)  # type: ignore[arg-type]
    assert running.storage.audit_log() == []


def test_a_keep_without_a_tee_is_refused_before_any_request(service, capsys):
    running = service()
    status = main(["keep", "serve", "--tee", "none", "--service", running.url,
                   "--listen", "127.0.0.1:0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(lines) == 1 and "no evidence" in lines[0], lines
    assert running.storage.audit_log() == []


def test_an_sev_keep_never_opens_a_connection_to_the_service(capsys):
    """Not one byte of an SEV keep's delivered key can reach a service that is never
    connected to: with a bare listening socket as the 'service', neither ``keep serve``
    nor ``obtain_identity`` (with a key delivered through LAUNCH_SECRET) connects."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        status = main(["keep", "serve", "--tee", "sev-sim", "--service", url,
                       "--listen", "127.0.0.1:0"])
        assert status != 0 and "pre-attestation" in capsys.readouterr().err
        with open_keep("sev-sim", b"") as keep:
            with pytest.raises(service_client.PreAttestationKeep) as raised:
                service_client.obtain_identity(keep.source, url)  # type: ignore[arg-type]
            assert "pre-attestation" in str(raised.value)
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):  # nobody knocked
            listener.accept()


# ----------------------------------------------------------------------- HTTPS


def test_a_keep_certified_by_a_service_on_https(service, workload, tmp_path, capsys):
    """``keep serve --service https://... --service-ca``: the keep gets its certificate over
    HTTPS, whose CRL distribution point is https too; a tenant reaches that CRL when it
    trusts the service's HTTPS CA (``--service-ca``), and refuses the keep when it cannot."""
    files = https_files(tmp_path / "https")
    running = service(tls=files)
    process, address = keep_process(running.url, "snp-sim", "--service-ca", str(files.ca))
    try:
        leaf, ca = peer_chain(address)
        status = main(["deploy", "--keep", f"127.0.0.1:{address[1]}", "--ca",
                       str(running.home / "ca.pem"), str(ROOT / "examples" / "hello.wat")])
        refused = capsys.readouterr().err
        out = io.BytesIO()
        accepted = deploy(address, workload, [], ca=running.ca.certificate,
                          service_ca=str(files.ca), stdout=out, stderr=io.BytesIO())
    finally:
        stop(process)
    assert ca == running.ca.certificate
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == f"{running.url}/v1/crl"
    assert running.url.startswith("https://")
    assert status == 125, refused  # refused: the CRL's HTTPS is not trusted, nothing was sent
    assert "cannot get the CA's CRL" in refused
    assert "HTTPS certificate is not trusted" in refused
    assert accepted == 43 and b"hello from the keep" in out.getvalue()  # 40 + SNP (3)
    assert [r.outcome for r in running.storage.audit_log()] == ["accepted"]


def test_keep_serve_refuses_an_untrusted_https_service_in_one_line(service, tmp_path, capsys):
    running = service(tls=https_files(tmp_path / "https"))
    status = main(["keep", "serve", "--tee", "sgx-sim", "--service", running.url,
                   "--listen", "127.0.0.1:0"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 1 and "listening" not in captured.out
    assert len(lines) == 1, lines
    assert "HTTPS certificate is not trusted" in lines[0] and "--service-ca" in lines[0]
    assert running.storage.audit_log() == []


def test_service_ca_usage_errors(tmp_path, capsys):
    files = https_files(tmp_path / "https")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    keep = ["keep", "serve", "--tee", "sgx-sim", "--listen", "127.0.0.1:0"]
    cases = [
        ([*keep, "--service", "http://127.0.0.1:9", "--service-ca", str(files.ca)],
         "--service-ca is for an https:// service"),
        ([*keep, "--service-ca", str(files.ca)], "--service-ca goes with --service URL"),
        ([*keep, "--service", "https://127.0.0.1:9", "--service-ca", str(tmp_path / "no")],
         "cannot read the CA file"),
        ([*keep, "--service", "https://127.0.0.1:9", "--service-ca", str(garbage)],
         "holds no PEM CA certificate"),
        (["deploy", "--keep", "127.0.0.1:9", "--service-ca", str(files.ca),
          str(ROOT / "examples" / "hello.wat")], "--service-ca goes with --ca"),
    ]
    for argv, expected in cases:
        assert main(argv) == (125 if argv[0] == "deploy" else 2), argv  # deploy's own: 125
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines


def test_plain_http_to_another_machine_is_warned_about():
    warn = service_client.plain_http_warning
    assert warn("http://127.0.0.1:8443") is None and warn("http://localhost:8443") is None
    assert warn("http://[::1]:8443") is None
    assert warn("https://service.example:8443") is None
    message = warn("http://service.example:8443")
    assert message is not None and "plain HTTP" in message and "https://" in message
    assert warn("http://10.0.0.7:8443") is not None


# ----------------------------------------------------------------------- renewal


def test_renewal_swaps_the_certificate_for_new_connections_only(service, workload):
    module = wasmtime.wat2wasm(workload.decode())
    running = service(lifetime=dt.timedelta(seconds=6))
    with open_keep("sgx-sim", b"") as keep:
        identity = service_client.obtain_identity(keep.source, running.url)
        assert 0 < Renewal.delay(identity) <= 4.0
        server = KeepServer(keep.source, identity, log=io.StringIO())
        address = server.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        renewed = threading.Event()
        renewal = Renewal(server, running.url, None, name="attestcall keep (sgx-sim)")
        original = server.replace_identity

        def replace(new) -> None:
            original(new)
            renewed.set()

        server.replace_identity = replace  # type: ignore[method-assign]
        try:
            sock = socket.create_connection(address, timeout=TIMEOUT)
            old = TlsSocket.connect(client_context(), sock, TIMEOUT)
            first = old.peer_certificate()
            assert first.serial_number == identity.certificate.serial_number
            renewal.start()
            assert renewed.wait(TIMEOUT), "no renewal"
            second = peer_chain(address)[0]
            assert second.serial_number != first.serial_number
            second.verify_directly_issued_by(running.ca.certificate)
            assert results.from_certificate(second) is not None
            # the connection opened before the renewal still runs a workload
            old.sendall(protocol.hello() + b"".join(protocol.workload_frames(module, [])))
            frames = read_frames(old)
            assert frames[-1].type == protocol.FrameType.EXIT
            assert protocol.parse_exit(frames[-1].payload) == 42  # the workload's status
            assert b"hello from the keep" in b"".join(
                protocol.parse_output(f.payload)[1] for f in frames
                if f.type == protocol.FrameType.OUTPUT)
            old.close()
        finally:
            renewal.stop()
            server.close()
            thread.join(TIMEOUT)
    assert [r.outcome for r in running.storage.audit_log()][:2] == ["accepted", "accepted"]
