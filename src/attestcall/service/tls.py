"""The attestation service's HTTPS: the certificate and key given to ``serve``.

:func:`check_files` reads the pair once, before anything listens or any worker starts, and
refuses with one line naming the file: missing or unreadable, not PEM, an encrypted key
(``serve`` runs unattended and cannot ask for a passphrase), or a certificate for another
key. :func:`server_context` is the context every worker builds from the same files:
attestcall's one TLS (:mod:`attestcall.tls`: TLS 1.3 only on pyOpenSSL, X25519MLKEM768
first and X25519 for classical clients, the key handed to OpenSSL from memory), no client
certificates; :mod:`attestcall.service.tls_protocol` runs it under uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from attestcall import tls
from attestcall.errors import UsageError


@dataclass(frozen=True)
class TlsFiles:
    """The PEM certificate (the server's first, then any intermediates) and its key."""

    cert: Path
    key: Path


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def check_files(cert: str | Path | None, key: str | Path | None) -> TlsFiles | None:
    """The pair as ``serve`` was given it: None for neither (plain HTTP), else the files once
    they are known to make a working TLS server. UsageError, one line, otherwise."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("HTTPS needs both --tls-cert FILE and --tls-key FILE (or neither, "
                         "for plain HTTP)")
    files = TlsFiles(Path(cert), Path(key))
    cert_pem = _read(files.cert, "--tls-cert")
    key_pem = _read(files.key, "--tls-key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise UsageError(f"--tls-cert {files.cert}: not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise UsageError(f"--tls-key {files.key}: the key is encrypted; give it unencrypted "
                         "(mode 0600): serve cannot ask for a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"--tls-key {files.key}: not a PEM private key") from None
    if _spki(chain[0].public_key()) != _spki(private_key.public_key()):
        raise UsageError(f"--tls-cert {files.cert} and --tls-key {files.key} do not match: "
                         "the certificate is for another key")
    server_context(files)  # what OpenSSL itself thinks of the pair
    return files


def server_context(files: TlsFiles) -> SSL.Context:
    """The server side of the service's HTTPS (see the module docstring)."""
    cert_pem = _read(files.cert, "--tls-cert")
    key_pem = _read(files.key, "--tls-key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"--tls-cert {files.cert} / --tls-key {files.key}: not an "
                         "unencrypted PEM certificate and key") from None
    try:
        return tls.server_context(chain[0], key, chain[1:])  # type: ignore[arg-type]
    except tls.TlsError as exc:
        raise UsageError(f"--tls-cert {files.cert} / --tls-key {files.key} cannot serve TLS: "
                         f"{exc.reason}") from None
