"""Naming what a structure holds, for people: the shared pieces of every describer.

``attestcall show`` prints evidence, keys and certificates field by field without verifying
anything. Each TEE's plugin record names its own describer (``Tee.describe``, in the
vendor's ``formats/``); the describers build a *tree*: dicts (field name → value, in the
specification's order), lists, and scalars (str, int, bool, None), which is the ``--json``
output and, indented, the text output. This module holds what they share: bytes as hex,
flag words as named bits, a certificate's subject, validity, key and extensions.

Part of the bottom layer: it imports only ``cryptography`` and the standard library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning

Tree = dict[str, Any]

# What cryptography raises for a malformed certificate, lazily, field by field.
CERTIFICATE_ERRORS = (ValueError, TypeError, KeyError, UnsupportedAlgorithm,
                      x509.InvalidVersion, x509.DuplicateExtension)


def hexs(data: bytes) -> str:
    """Bytes as lowercase hex, no separators."""
    return bytes(data).hex()


def flags(value: int, names: Mapping[int, str], width: int) -> Tree:
    """A flag word: ``raw`` as 0x-hex of ``width`` bits, then every named bit as a bool
    (in bit order), then ``reserved_bits_set``: the unnamed bits that are set (only when
    there are any)."""
    out: Tree = {"raw": f"{value:#0{width // 4 + 2}x}"}
    for bit in sorted(names):
        out[names[bit]] = bool(value >> bit & 1)
    unnamed = [bit for bit in range(width) if value >> bit & 1 and bit not in names]
    if unnamed:
        out["reserved_bits_set"] = unnamed
    return out


def instant(value: dt.datetime) -> str:
    """An instant as ISO 8601 UTC with a Z."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_key(key: Any) -> Tree:
    """A public key's algorithm and size or curve, and the SHA-256 of its DER
    SubjectPublicKeyInfo (its fingerprint)."""
    out: Tree
    if isinstance(key, ec.EllipticCurvePublicKey):
        out = {"algorithm": "EC", "curve": key.curve.name, "bits": key.curve.key_size}
    elif isinstance(key, rsa.RSAPublicKey):
        out = {"algorithm": "RSA", "bits": key.key_size}
    elif isinstance(key, ed25519.Ed25519PublicKey):
        out = {"algorithm": "Ed25519"}
    elif isinstance(key, ed448.Ed448PublicKey):
        out = {"algorithm": "Ed448"}
    elif isinstance(key, dsa.DSAPublicKey):
        out = {"algorithm": "DSA", "bits": key.key_size}
    else:
        name = type(key).__name__.removesuffix("PublicKey").lstrip("_")
        out = {"algorithm": re.sub(r"^MLDSA(\d+)$", r"ML-DSA-\1", name)}
    try:
        spki = key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return out
    out["spki_sha256"] = hashlib.sha256(spki).hexdigest()
    return out


def load_certificate(data: bytes) -> x509.Certificate:
    """A DER certificate (AMD's serial number 0 accepted without a warning); ValueError
    when the bytes are not one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                                message=".*serial number.*")
        return x509.load_der_x509_certificate(bytes(data))


def _serial(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        return f"{cert.serial_number:#x}"


def extension_list(extensions: x509.Extensions) -> list[Tree]:
    """Each extension: its OID, name (cryptography's, or "unknown") and criticality."""
    out = []
    for extension in extensions:
        name = extension.oid._name  # "Unknown OID" for the ones cryptography does not name
        out.append({"oid": extension.oid.dotted_string,
                    "name": name if name != "Unknown OID" else "unknown",
                    "critical": extension.critical})
    return out


def certificate(cert: x509.Certificate) -> Tree:
    """Subject, issuer, serial, validity, public key, signature algorithm, SHA-256
    fingerprint and the extensions (by OID) of a certificate. Raises one of
    :data:`CERTIFICATE_ERRORS` for a malformed one."""
    try:
        algorithm = cert.signature_algorithm_oid._name
    except (ValueError, UnsupportedAlgorithm):
        algorithm = "unknown"
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "self_issued": cert.subject == cert.issuer,
        "serial_number": _serial(cert),
        "not_before": instant(cert.not_valid_before_utc),
        "not_after": instant(cert.not_valid_after_utc),
        "public_key": public_key(cert.public_key()),
        "signature_algorithm": algorithm,
        "sha256_fingerprint": hashlib.sha256(
            cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "extensions": extension_list(cert.extensions),
    }
