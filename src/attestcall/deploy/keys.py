"""The keep's TLS key types and the nonce that binds evidence to a public key.

The nonce given to get_attestation is a hash of the key's DER SubjectPublicKeyInfo,
zero-padded to 64 bytes. docs/design.md fixes SHA-256 for P-256 and SHA-384 for P-384; the
other key types take the hash matching their security strength (Ed25519 and RSA-3072:
SHA-256), and every ML-DSA key SHA-512, which fills the 64 bytes exactly. The key type is
read off the public key itself, so a tenant needs no side channel to know which hash to
use.

Every type here serves TLS (:mod:`attestcall.tls`: pyOpenSSL over the OpenSSL
``cryptography`` bundles, which has ML-DSA).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from attestcall import der
from attestcall.abi import NONCE_SIZE
from attestcall.errors import AttestcallError

MLDSA_KEY_TYPES = ("mldsa44", "mldsa65", "mldsa87")
KEY_TYPES = ("p256", "p384", "ed25519", "rsa3072", *MLDSA_KEY_TYPES)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "p256": hashes.SHA256,
    "p384": hashes.SHA384,
    "ed25519": hashes.SHA256,
    "rsa3072": hashes.SHA256,
    **{name: hashes.SHA512 for name in MLDSA_KEY_TYPES},
}
_MLDSA = {  # key type: (private key class, public key class)
    "mldsa44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "mldsa65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "mldsa87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}


# The algorithm a PKCS#8 PrivateKeyInfo names, for messages about one that cannot be loaded.
_PKCS8_ALGORITHMS = {
    "1.2.840.10045.2.1": "EC",
    "1.3.101.112": "Ed25519",
    "1.2.840.113549.1.1.1": "RSA",
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}


class UnsupportedKeyType(AttestcallError):
    """A key type this build cannot use for the keep's TLS identity."""


def pkcs8_algorithm(blob: bytes) -> str | None:
    """The algorithm a DER PKCS#8 PrivateKeyInfo says it holds (``ML-DSA-65``, ``EC``, or
    the OID), without loading the key; None when the blob is not even that shape."""
    try:
        version, algorithm, *_ = der.decode(blob).children()
        oid = algorithm.children()[0].as_oid()
    except (der.DerError, ValueError, IndexError):
        return None
    return _PKCS8_ALGORITHMS.get(oid, oid)


def generate_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key of ``key_type`` (one of KEY_TYPES)."""
    if key_type not in KEY_TYPES:
        raise UnsupportedKeyType(f"unknown key type {key_type!r}; choose one of "
                                 f"{', '.join(KEY_TYPES)}")
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return _MLDSA[key_type][0].generate()


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
    for name, (_, public_class) in _MLDSA.items():
        if isinstance(public_key, public_class):
            return name
    raise UnsupportedKeyType(f"{type(public_key).__name__} keys are not supported")


def signature_hash(key_type: str) -> hashes.HashAlgorithm | None:
    """The hash for signing a certificate with a key of ``key_type`` (None: the algorithm
    fixes its own, as Ed25519 and ML-DSA do)."""
    if key_type == "ed25519" or key_type in MLDSA_KEY_TYPES:
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
    return nonce_with(_HASHES[key_type_of(public_key)], spki_der(public_key))


def binding_hash(key_type: str) -> str:
    """The name of the hash that binds a key of ``key_type`` (``sha512`` for ML-DSA)."""
    return _HASHES[key_type].name


def nonce_with(algorithm: type[hashes.HashAlgorithm], spki: bytes) -> bytes:
    """``algorithm`` of ``spki``, zero-padded to the 64-byte nonce."""
    digest = hashes.Hash(algorithm())
    digest.update(spki)
    return digest.finalize().ljust(NONCE_SIZE, b"\0")


def binding_hashes() -> tuple[type[hashes.HashAlgorithm], ...]:
    """Every hash some key type binds with (to name the one a wrong binding used)."""
    return tuple(dict.fromkeys(_HASHES.values()))
