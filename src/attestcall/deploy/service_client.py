"""The keep's side of the attestation service: a certificate for a key made inside the keep.

:func:`obtain_identity` asks the service for a challenge (``GET /v1/challenge``), makes a
fresh key inside the keep (the TEE record's default key type unless told otherwise), asks
``get_attestation`` through the keep's own EvidenceSource with the nonce
:func:`attestcall.service.csr.binding_nonce` of that key and the challenge, sends the CSR
(``POST /v1/certificate``) and checks what comes back before using it: a leaf for our own
public key, directly issued by the CA certificate that follows it, valid now. The result is
a :class:`~attestcall.deploy.identity.KeepIdentity` whose ``chain`` is the CA.

Pre-attestation keeps (SEV) are refused before any request: what their get_attestation
gives is the keep's delivered private key, which never leaves the keep. So is a keep without
a TEE (technology 0), which has no evidence to certify.

HTTP is the standard library's, bounded: a timeout per socket operation and an overall
deadline, a cap on every answer, no redirects. An https service's certificate and host name
are verified (:func:`service_tls`): against the system's trust store, or against the CA
given with ``--service-ca``; a certificate that does not verify ends the exchange before a
byte of the request is sent. Plain http to a host that is not this machine's loopback is
allowed, with a warning (:func:`plain_http_warning`): the tenants' trust does not rest on the
transport (they check the issued certificate against the service CA they hold), but an
attacker on the path could read the evidence and keep the keep from being certified.

A refusal (a problem document) raises :class:`ServiceRefused` carrying the service's
reasons; a service that cannot be reached or answers nonsense raises
:class:`ServiceUnreachable`.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from attestcall import abi, fetch, pki
from attestcall import tls as tls_module
from attestcall.deploy.identity import KeepIdentity, attest
from attestcall.deploy.keys import generate_key, spki_der
from attestcall.errors import AttestcallError, UsageError
from attestcall.service import csr as csrs
from attestcall.tees import registry

DEFAULT_TIMEOUT = 30.0  # seconds, per socket operation and for the whole answer
MAX_ANSWER = 256 * 1024  # bytes; a chain of two certificates is a few KiB


class ServiceError(AttestcallError):
    """Base of the errors getting a certificate from the attestation service."""


class ServiceUnreachable(ServiceError):
    """The service could not be reached, timed out or answered something unusable."""


class ServiceRefused(ServiceError):
    """The service refused the keep (a problem document); ``reasons`` are its words."""

    def __init__(self, message: str, status: int, reasons: list[str]):
        super().__init__(message)
        self.status = status
        self.reasons = reasons


class IssuedChainInvalid(ServiceError):
    """The chain the service returned is not for our key or does not hold together."""


class PreAttestationKeep(ServiceError):
    """A pre-attestation keep (SEV) never asks the service: its tenant provisions it."""


class NoEvidenceKeep(ServiceError):
    """A keep whose TEE gives no verifiable evidence (technology 0, no TEE): there is
    nothing for the service to certify."""


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def service_tls(service: str, ca_file: str | None = None) -> SSL.Context | None:
    """The TLS context for the service at ``service``: None for plain http (where
    ``ca_file`` makes no sense: UsageError), else attestcall's TLS 1.3 client
    (X25519MLKEM768 first) verifying the service's certificate against ``ca_file`` only,
    or the system's trust store without one."""
    scheme = urllib.parse.urlsplit(service).scheme
    if scheme != "https":
        if ca_file is not None:
            raise UsageError(f"--service-ca is for an https:// service, and {service} is not")
        return None
    return tls_module.verifying_client_context(ca_file)


def plain_http_warning(service: str) -> str | None:
    """A warning when ``service`` is plain http to another machine (see the module
    docstring for why it is not refused)."""
    parts = urllib.parse.urlsplit(service)
    if parts.scheme != "http" or fetch.is_loopback(parts.hostname):
        return None
    return (f"warning: the attestation service {service} is plain HTTP to another machine: "
            "the evidence crosses the network in clear and an attacker on the path could "
            "keep this keep from being certified; use an https:// service")


def _endpoint(base: str, path: str) -> tuple[urllib.parse.SplitResult, str]:
    parts = urllib.parse.urlsplit(base.rstrip("/") + path)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceUnreachable(f"not an http(s) service URL: {base!r}")
    return parts, urllib.parse.urlunsplit(parts)


def request(base: str, method: str, path: str, body: bytes | None = None, *,
            content_type: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            max_size: int = MAX_ANSWER, tls: SSL.Context | None = None) -> Answer:
    """One bounded HTTP request to the service; any status comes back as an Answer.
    ServiceUnreachable when there is no usable answer. ``tls``: the context for an https
    service (default: :func:`service_tls` without a CA file, the system's trust store)."""
    parts, url = _endpoint(base, path)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = tls_module.HttpsConnection(
            parts.hostname, parts.port, timeout=timeout,
            context=tls if tls is not None else tls_module.verifying_client_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": "attestcall keep", "Accept": "*/*"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    deadline = time.monotonic() + timeout
    try:
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        body = fetch.read_body(answer, url, max_size, deadline, timeout,
                               error=ServiceUnreachable)
        return Answer(answer.status, answer.getheader("Content-Type") or "", body)
    except TimeoutError:
        raise ServiceUnreachable(f"{url}: timed out after {timeout:g} s") from None
    except tls_module.CertificateUntrusted as exc:
        raise ServiceUnreachable(
            f"{url}: the attestation service's HTTPS certificate is not trusted "
            f"({exc.reason}); give the CA that issued it with --service-ca FILE") from None
    except tls_module.TlsError as exc:
        raise ServiceUnreachable(f"{url}: {fetch.tls_failure(exc)}") from None
    except http.client.HTTPException as exc:
        raise ServiceUnreachable(f"{url}: not a valid HTTP answer "
                                 f"({type(exc).__name__})") from None
    except OSError as exc:
        text = exc.strerror or str(exc)
        raise ServiceUnreachable(f"{url}: cannot reach the attestation service: {text}") \
            from None
    finally:
        connection.close()


def _refusal(url: str, answer: Answer) -> ServiceError:
    """The error for a non-2xx answer: the problem document's reasons when there is one."""
    reasons: list[str] = []
    try:
        document = json.loads(answer.body)
        found = document.get("reasons") if isinstance(document, dict) else None
        if isinstance(found, list):
            reasons = [str(r) for r in found]
        elif isinstance(document, dict) and document.get("detail"):
            reasons = [str(document["detail"])]
    except (ValueError, UnicodeDecodeError):
        pass
    said = "; ".join(reasons) if reasons else "no reason given"
    if 400 <= answer.status < 500:
        return ServiceRefused(f"the attestation service at {url} refused the keep "
                              f"(HTTP {answer.status}): {said}", answer.status, reasons)
    return ServiceUnreachable(f"the attestation service at {url} failed (HTTP "
                              f"{answer.status}): {said}")


def get_challenge(base: str, *, timeout: float = DEFAULT_TIMEOUT,
                  tls: SSL.Context | None = None) -> bytes:
    """A fresh challenge from ``GET /v1/challenge``."""
    answer = request(base, "GET", "/v1/challenge", timeout=timeout, tls=tls)
    if answer.status != 200:
        raise _refusal(base, answer)
    try:
        document = json.loads(answer.body)
        return csrs.decode_challenge(document["challenge"])
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, csrs.ChallengeError) as exc:
        raise ServiceUnreachable(f"{base}: the challenge answer is unusable: {exc}") from None


def check_chain(body: bytes, private_key, *, now: dt.datetime | None = None,
                ) -> tuple[x509.Certificate, x509.Certificate]:
    """(leaf, CA) from the PEM chain the service returned, after checking the leaf is for
    ``private_key``'s public key, directly issued by the CA and valid now."""
    try:
        certificates = x509.load_pem_x509_certificates(body)
    except ValueError as exc:
        raise IssuedChainInvalid(f"the service's answer is not a PEM chain: {exc}") from None
    if len(certificates) != 2:
        raise IssuedChainInvalid(f"the service returned {len(certificates)} certificates, "
                                 "not a leaf and its CA")
    leaf, ca = certificates
    if spki_der(leaf.public_key()) != spki_der(private_key.public_key()):  # type: ignore[arg-type]
        raise IssuedChainInvalid("the issued certificate is not for the keep's key")
    failure = pki.issued_by(leaf, ca)
    if failure is not None:
        raise IssuedChainInvalid(f"the issued certificate does not chain to the CA "
                                 f"returned: {failure.detail}")
    if pki.cert_window(leaf).timing(now or dt.datetime.now(dt.UTC)) is not pki.Timing.VALID:
        raise IssuedChainInvalid("the issued certificate is not valid now")
    return leaf, ca


def obtain_identity(source: abi.EvidenceSource, service: str, key_type: str | None = None,
                    *, name: str = "attestcall keep", timeout: float = DEFAULT_TIMEOUT,
                    tls: SSL.Context | None = None) -> KeepIdentity:
    """The keep's identity certified by the attestation service at ``service`` (``tls``:
    the context for an https service, :func:`service_tls`)."""
    technology = int(source.technology)
    tee = registry().by_id(technology)
    if technology == abi.Technology.SEV or (tee is not None and tee.pre_attestation):
        raise PreAttestationKeep(pre_attestation_message(tee.label if tee else "SEV"))
    if tee is None or not tee.verifiable:
        what = tee.label if tee is not None else f"technology {technology}"
        raise NoEvidenceKeep(f"keep serve --service: a {what} keep has no evidence the "
                             "attestation service could verify; nothing was sent to it")
    challenge = get_challenge(service, timeout=timeout, tls=tls)
    key = generate_key(key_type or (tee.default_key_type if tee is not None else "p256"))
    technology, evidence = attest(source, csrs.binding_nonce(key.public_key(), challenge))
    csr = csrs.build_csr(key, technology, evidence, challenge, name)
    answer = request(service, "POST", "/v1/certificate",
                     csr.public_bytes(serialization.Encoding.DER),
                     content_type="application/pkcs10", timeout=timeout, tls=tls)
    if answer.status != 200:
        raise _refusal(service, answer)
    leaf, ca = check_chain(answer.body, key)
    return KeepIdentity(key, leaf, technology, evidence, (ca,))


def pre_attestation_message(label: str) -> str:
    """The one line refusing ``--service`` for a pre-attestation keep."""
    return (f"keep serve --service: a {label} keep is pre-attestation: its tenant provisions "
            "it (deploy without --service); nothing was sent to the attestation service")
