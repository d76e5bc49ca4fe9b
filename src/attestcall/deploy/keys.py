"""The keep's TLS key types and the nonce that binds evidence to a public key.

The nonce given to get_attestation is a hash of the key's DER SubjectPublicKeyInfo,
zero-padded to 64 bytes. docs/design.md fixes SHA-256 for P-256 and SHA-384 for P-384; the
other key types take the hash matching their security strength (Ed25519 and RSA-3072:
SHA-256; ML-DSA-65: SHA-384). The key type is read off the public key itself, so a tenant
needs no side channel to know which hash to use.

ML-DSA-65 certificates can be made (cryptography supports the algorithm), but TLS with them
needs OpenSSL 3.5 in the ``ssl`` module; with an older OpenSSL the key type is refused
before any key is made (:class:`UnsupportedKeyType`).
"""

from __future__ import annotations

import ssl

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from attestcall.abi import NONCE_SIZE
from attestcall.errors import AttestcallError

KEY_TYPES = ("p256", "p384", "ed25519", "rsa3072", "mldsa65")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "p256": hashes.SHA256,
    "p384": hashes.SHA384,
    "ed25519": hashes.SHA256,
    "rsa3072": hashes.SHA256,
    "mldsa65": hashes.SHA384,
}
MLDSA_TLS_OPENSSL = (3, 5, 0)


class UnsupportedKeyType(AttestcallError):
    """A key type this build cannot use for the keep's TLS identity."""


def tls_supports(key_type: str) -> bool:
    """Whether this Python's ``ssl`` can serve a certificate of ``key_type``."""
    if key_type not in KEY_TYPES:
        return False
    if key_type == "mldsa65":
        return ssl.OPENSSL_VERSION_INFO[:3] >= MLDSA_TLS_OPENSSL
    return True


def generate_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key of ``key_type`` (one of KEY_TYPES usable for TLS here)."""
    if key_type not in KEY_TYPES:
        raise UnsupportedKeyType(f"unknown key type {key_type!r}; choose one of "
                                 f"{', '.join(KEY_TYPES)}")
    if not tls_supports(key_type):
        raise UnsupportedKeyType(
            f"{key_type} certificates need OpenSSL {'.'.join(map(str, MLDSA_TLS_OPENSSL))} "
            f"for TLS; this Python's ssl module has {ssl.OPENSSL_VERSION}"
        )
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return mldsa.MLDSA65PrivateKey.generate()  # pragma: no cover - needs OpenSSL 3.5 ssl


def key_type_of(public_key: CertificatePublicKeyTypes) -> str:
    """The KEY_TYPES name of a public key; UnsupportedKeyType for any other key."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "p256", "secp384r1": "p384"}
        if public_key.curve.name in names:
            return names[public_key.curve.name]
        raise UnsupportedKeyType(f"EC curve {public_key.curve.name} is not supported")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size == 3072:
            return "rsa3072"
        raise UnsupportedKeyType(f"RSA-{public_key.key_size} is not supported (RSA-3072 is)")
    if isinstance(public_key, mldsa.MLDSA65PublicKey):
        return "mldsa65"
    raise UnsupportedKeyType(f"{type(public_key).__name__} keys are not supported")


def signature_hash(key_type: str) -> hashes.HashAlgorithm | None:
    """The hash for signing a certificate with a key of ``key_type`` (None: the algorithm
    fixes its own, as Ed25519 and ML-DSA do)."""
    if key_type in ("ed25519", "mldsa65"):
        return None
    return hashes.SHA384() if key_type == "p384" else hashes.SHA256()


def spki_der(public_key: CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``public_key``."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def binding_nonce(public_key: CertificatePublicKeyTypes) -> bytes:
    """The 64-byte nonce binding evidence to ``public_key``: the key type's hash of its DER
    SubjectPublicKeyInfo, zero-padded."""
    digest = hashes.Hash(_HASHES[key_type_of(public_key)]())
    digest.update(spki_der(public_key))
    return digest.finalize().ljust(NONCE_SIZE, b"\0")
