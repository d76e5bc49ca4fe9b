"""The service over HTTPS (uvicorn on 127.0.0.1 with a certificate from a throwaway CA):
TLS versions, a certificate issued and its https CRL checked by a tenant, clients that do
not trust the service's certificate refused before sending anything, and the request head's
deadline after the handshake."""

from __future__ import annotations

import http.client
import socket
import ssl
import warnings
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestcall import diskcache, fetch
from attestcall.deploy import service_client
from attestcall.deploy.ca_trust import CaTrust, Untrusted
from attestcall.errors import UsageError
from attestcall.service.serving import ServiceConfig
from attestcall.service.tls import TlsFiles, check_files, server_context
from attestcall.tls import HttpsConnection, TlsSocket, verifying_client_context
from tests.service.helpers import TIMEOUT, exchange
from tests.service.test_app import Running, obtain
from tests.service.test_slow_clients import problem_of, status_of, until_closed
from tests.tls_material import HttpsFiles, encrypted_key, https_files

HEAD = 1.0  # the service's header_timeout here, seconds


@pytest.fixture
def files(tmp_path) -> HttpsFiles:
    return https_files(tmp_path / "https")


@pytest.fixture
def secure(tmp_path, files, keeps) -> Iterator[Running]:
    """The service on HTTPS with ``files``' certificate."""
    running = Running(tmp_path / "service", tls=files, trust_simulated=True,
                      header_timeout=HEAD)
    try:
        yield running
    finally:
        running.stop()


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version a client with ``context`` gets from 127.0.0.1:``port``."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        return tls.version() or ""


def test_healthz_and_a_certificate_over_https(secure, files, keeps, tmp_path):
    status, _, body = secure.request("GET", "/healthz")  # trusting files.ca only
    assert (status, body) == (200, b'{"status":"ok"}')
    issued, _ = obtain(secure, keeps["sgx-sim"])
    points = issued.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = points[0].full_name[0].value
    assert crl_url == f"https://127.0.0.1:{secure.port}/v1/crl"
    leaf = issued.public_bytes(serialization.Encoding.DER)
    # a tenant that does not trust the service's HTTPS cannot fetch the CRL...
    untrusting = CaTrust(secure.ca.certificate, cache=diskcache.Cache(tmp_path / "a"))
    with pytest.raises(Untrusted) as refused:
        untrusting.check(leaf)
    assert "HTTPS certificate is not trusted" in str(refused.value)
    # ... one that does (deploy --service-ca) fetches it, verifies it, and accepts the keep
    trusting = CaTrust(secure.ca.certificate, cache=diskcache.Cache(tmp_path / "b"),
                       service_ca=files.ca)
    assert trusting.check(leaf).technology_name == "sgx"


def test_tls_1_3_only_on_the_hybrid_group_and_x25519_for_classical_clients(secure, files):
    """Our client (the keep's, a tenant's CRL fetch) gets X25519MLKEM768; Python's ssl (a
    classical-only client) gets TLS 1.3 on X25519; TLS 1.2 and older are refused."""
    with socket.create_connection(("127.0.0.1", secure.port), timeout=TIMEOUT) as raw, \
            TlsSocket.connect(verifying_client_context(files.ca), raw, TIMEOUT,
                              verify_name="127.0.0.1") as ours:
        assert (ours.version, ours.group) == ("TLSv1.3", "X25519MLKEM768")
    context = fetch.https_context(files.ca)
    with socket.create_connection(("127.0.0.1", secure.port), timeout=TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as classical:
        assert classical.version() == "TLSv1.3"
        assert classical.cipher()[0].startswith("TLS_")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(secure.port, context)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: yes
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(secure.port, old)
    assert server_context(TlsFiles(files.cert, files.key)) is not None


def assert_refused_before_asking(service: Running, tls, why: str) -> None:
    """The keep's client stops at the handshake with one clear line; the service never
    saw a request."""
    with pytest.raises(service_client.ServiceUnreachable) as refused:
        service_client.get_challenge(service.url, tls=tls)
    message = str(refused.value)
    assert "\n" not in message
    assert "HTTPS certificate is not trusted" in message and why in message, message
    assert "--service-ca" in message
    unchecked = fetch.https_context(service.tls.ca)
    unchecked.check_hostname = False
    metrics = exchange(service.port, "GET", "/metrics", tls=unchecked)[2]
    assert b'path="/v1/challenge"' not in metrics


def test_a_client_that_does_not_trust_the_service_is_refused_before_asking(
        secure, files, tmp_path):
    """Without the CA (the system's store) or with another CA; with the right one, the
    challenge comes."""
    other = https_files(tmp_path / "other", name="other")
    for ca in (None, str(other.ca)):
        assert_refused_before_asking(secure, service_client.service_tls(secure.url, ca),
                                     "unable to get local issuer certificate")
    tls = service_client.service_tls(secure.url, str(files.ca))
    assert len(service_client.get_challenge(secure.url, tls=tls)) == 32


def test_a_certificate_for_another_host_is_refused(tmp_path, keeps):
    named = https_files(tmp_path / "named", hosts=("localhost",), name="named")
    service = Running(tmp_path / "service", tls=named, trust_simulated=True)
    try:
        assert_refused_before_asking(service, service_client.service_tls(
            service.url, str(named.ca)), "IP address mismatch")
        # the same service by the name its certificate gives works
        assert len(service_client.get_challenge(
            f"https://localhost:{service.port}",
            tls=service_client.service_tls(service.url, str(named.ca)))) == 32
    finally:
        service.stop()


def test_plain_http_to_the_https_port_gets_no_answer_in_clear(secure):
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        exchange(secure.port, "GET", "/healthz")


def test_the_head_deadline_starts_after_the_handshake(secure, files):
    context = fetch.https_context(files.ca)
    for first, expected in ((b"", None), (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 408)):
        with socket.create_connection(("127.0.0.1", secure.port), timeout=TIMEOUT) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            if first:
                tls.sendall(first)
            answer, _ = until_closed(tls)
        assert status_of(answer) == expected
        if expected:
            assert problem_of(answer)[1]["status"] == 408


# ------------------------------------------------------------------- the files


def test_the_pair_is_checked_with_one_line_for_each_fault(files, tmp_path):
    other = https_files(tmp_path / "other", name="other")
    assert check_files(None, None) is None
    assert check_files(files.cert, files.key) == TlsFiles(files.cert, files.key)
    faults = [
        ((files.cert, None), "needs both --tls-cert FILE and --tls-key FILE"),
        ((None, files.key), "needs both --tls-cert FILE and --tls-key FILE"),
        ((tmp_path / "absent.pem", files.key), "cannot read it: No such file"),
        ((files.cert, tmp_path), "cannot read it: Is a directory"),
        ((files.key, files.key), "not a PEM certificate"),
        ((files.cert, files.cert), "not a PEM private key"),
        ((files.cert, encrypted_key(files)), "the key is encrypted"),
        ((files.cert, other.key), "do not match: the certificate is for another key"),
    ]
    for (cert, key), expected in faults:
        with pytest.raises(UsageError) as refused:
            check_files(cert, key)
        assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_the_config_carries_the_deadline_and_builds_tls_where_it_serves(files):
    """What ``--workers N`` hands to each worker process: plain data, TLS built by load()."""
    import pickle

    config = ServiceConfig("attestcall.service.app:app_from_environment", factory=True,
                           header_timeout=3.5, tls=TlsFiles(files.cert, files.key))
    copy = pickle.loads(pickle.dumps(config))
    assert copy.header_timeout == 3.5 and copy.tls == TlsFiles(files.cert, files.key)
    assert copy.http.__name__ == "HttpsProtocol" and copy.loop == "uvloop"
    assert copy.tls_context is None  # built by load(), in the worker

    async def app(scope, receive, send) -> None:  # what load() needs: any ASGI app
        pass

    loaded = ServiceConfig(app, tls=TlsFiles(files.cert, files.key))
    loaded.load()
    assert loaded.tls_context is not None and loaded.ssl is None  # ours, not uvicorn's ssl


def test_the_keeps_client_negotiates_the_hybrid_group_with_the_service(secure, files):
    """What ``keep serve --service`` and ``deploy --ca``'s CRL fetch speak: attestcall's
    HttpsConnection, the service's certificate verified, X25519MLKEM768."""
    connection = HttpsConnection("127.0.0.1", secure.port, timeout=TIMEOUT,
                                 context=verifying_client_context(files.ca))
    try:
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (200, b'{"status":"ok"}')
        assert isinstance(connection.sock, TlsSocket)
        assert (connection.sock.version, connection.sock.group) == ("TLSv1.3",
                                                                     "X25519MLKEM768")
    finally:
        connection.close()
