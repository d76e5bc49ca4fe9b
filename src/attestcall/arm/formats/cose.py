"""COSE as the CCA token uses it (RFC 9052 / 9053): COSE_Sign1 with ES256, ES384 or
ES512, and EC2 COSE_Key public keys. CBOR through :mod:`attestcall.cbor` (cbor2), signatures through
``cryptography``; no I/O.

A COSE_Sign1 is ``[protected: bstr, unprotected: map, payload: bstr, signature: bstr]``,
tagged 18 in a CCA token. The signature covers the Sig_structure
``["Signature1", protected, external_aad = b"", payload]`` over the *exact* protected and
payload bytes, so nothing here re-encodes what it verifies. ECDSA signatures are raw
``r || s`` (each the curve's size), converted to and from DER for ``cryptography``.

Every malformed input is an :class:`attestcall.errors.EvidenceError` naming what is wrong;
hostile CBOR (nesting, lengths past the input, invalid text) ends as one too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attestcall import cbor
from attestcall.errors import EvidenceError

TAG_SIGN1 = 18
HEADER_ALG = 1
HEADER_KID = 4

# COSE_Key (RFC 9052 section 7, RFC 9053 section 7.1)
KEY_KTY, KEY_ALG, KEY_CRV, KEY_X, KEY_Y = 1, 3, -1, -2, -3
KTY_EC2 = 2
MAX_DEPTH = 16  # a CCA token nests at most five deep; anything deeper is hostile
ARRAY = (list, tuple)  # cbor2 gives a tag's content immutable: arrays as tuples


@dataclass(frozen=True)
class Algorithm:
    """A COSE ECDSA algorithm: its id, name, hash and the curve of its keys."""

    id: int
    name: str
    hash: type[hashes.HashAlgorithm]
    curve: type[ec.EllipticCurve]
    crv: int  # the COSE curve id
    size: int  # bytes of one coordinate (and of r, of s)


ES256 = Algorithm(-7, "ES256", hashes.SHA256, ec.SECP256R1, 1, 32)
ES384 = Algorithm(-35, "ES384", hashes.SHA384, ec.SECP384R1, 2, 48)
ES512 = Algorithm(-36, "ES512", hashes.SHA512, ec.SECP521R1, 3, 66)
ALGORITHMS: dict[int, Algorithm] = {a.id: a for a in (ES256, ES384, ES512)}
BY_CRV: dict[int, Algorithm] = {a.crv: a for a in (ES256, ES384, ES512)}
BY_CURVE_NAME: dict[str, Algorithm] = {a.curve.name: a for a in (ES256, ES384, ES512)}


# ---------------------------------------------------------------------------- CBOR


def loads(data: bytes, what: str) -> Any:
    """The one CBOR data item that ``data`` is (:func:`attestcall.cbor.loads`: bounded
    nesting, no repeated map key, nothing after it); EvidenceError naming ``what``
    otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EvidenceError(f"the {what} is not a byte string")
    try:
        return cbor.loads(bytes(data), max_depth=MAX_DEPTH)
    except cbor.CborError as exc:
        raise EvidenceError(f"the {what} {exc}") from None


def dumps(value: Any) -> bytes:
    """``value`` in CBOR, deterministically (RFC 8949 section 4.2: shortest forms, map
    keys in bytewise order)."""
    return cbor.dumps(value)


def untag(value: Any, tag: int, what: str, *, required: bool = True) -> Any:
    """The content of CBOR tag ``tag``; EvidenceError for another tag (or no tag when
    ``required``)."""
    if isinstance(value, cbor2.CBORTag):
        if value.tag != tag:
            raise EvidenceError(f"the {what} has CBOR tag {value.tag}, not {tag}")
        return value.value
    if required:
        raise EvidenceError(f"the {what} is not tagged {tag}")
    return value


# ----------------------------------------------------------------------- COSE_Sign1


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1: the exact protected and payload bytes it signs."""

    protected: bytes  # the protected header's serialized map, exactly as signed
    header: Mapping[Any, Any]  # ... decoded
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def algorithm(self) -> Algorithm:
        """The algorithm of the protected header; EvidenceError when absent or not
        ES256/ES384/ES512."""
        alg = self.header.get(HEADER_ALG)
        if alg is None:
            raise EvidenceError("the COSE_Sign1's protected header has no algorithm (1)")
        found = ALGORITHMS.get(alg) if isinstance(alg, int) and not isinstance(alg, bool) \
            else None
        if found is None:
            raise EvidenceError(f"the COSE_Sign1's algorithm {alg!r} is not ES256 (-7), "
                                "ES384 (-35) or ES512 (-36)")
        return found

    def to_be_signed(self) -> bytes:
        """The Sig_structure ``["Signature1", protected, b"", payload]`` in CBOR."""
        return sig_structure(self.protected, self.payload)

    def verify(self, key: ec.EllipticCurvePublicKey) -> str | None:
        """Why ``key`` does not verify this signature, or None when it does."""
        alg = self.algorithm
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return "the key is not an elliptic-curve key"
        if key.curve.name != alg.curve.name:
            return f"{alg.name} needs a {alg.curve.name} key, not {key.curve.name}"
        if len(self.signature) != 2 * alg.size:
            return (f"an {alg.name} signature is {2 * alg.size} bytes, not "
                    f"{len(self.signature)}")
        try:
            key.verify(raw_to_der(self.signature, alg.size), self.to_be_signed(),
                       ec.ECDSA(alg.hash()))
        except InvalidSignature:
            return "the signature does not verify"
        return None


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    return dumps(["Signature1", protected, external_aad, payload])


def decode_sign1(data: bytes, what: str = "COSE_Sign1") -> Sign1:
    """A tagged (18) COSE_Sign1 from its bytes."""
    value = untag(loads(data, what), TAG_SIGN1, what)
    if not isinstance(value, ARRAY) or len(value) != 4:
        raise EvidenceError(f"the {what} is not a COSE_Sign1 array of four items")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes):
        raise EvidenceError(f"the {what}'s protected header is not a byte string")
    if not isinstance(unprotected, Mapping):
        raise EvidenceError(f"the {what}'s unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise EvidenceError(f"the {what} has no embedded payload (a byte string)")
    if not isinstance(signature, bytes):
        raise EvidenceError(f"the {what}'s signature is not a byte string")
    header: Mapping[Any, Any] = {}
    if protected:  # an empty bstr stands for an empty map (RFC 9052 section 3)
        header = loads(protected, f"{what}'s protected header")
        if not isinstance(header, Mapping):
            raise EvidenceError(f"the {what}'s protected header is not a map")
    for label in header:
        if label in unprotected:
            raise EvidenceError(f"the {what} has header {label!r} in both buckets")
    return Sign1(protected, header, unprotected, payload, signature)


def encode_sign1(protected: Mapping[Any, Any] | bytes, payload: bytes, signature: bytes,
                 unprotected: Mapping[Any, Any] | None = None) -> bytes:
    """A tagged COSE_Sign1; ``protected`` as a map (encoded here) or its exact bytes."""
    header = protected if isinstance(protected, bytes) else dumps(dict(protected))
    return dumps(cbor2.CBORTag(TAG_SIGN1, [header, dict(unprotected or {}), payload,
                                           signature]))


def sign1(private_key: ec.EllipticCurvePrivateKey, alg: Algorithm | int | str,
          payload: bytes, *, unprotected: Mapping[Any, Any] | None = None) -> bytes:
    """``payload`` signed by ``private_key`` as a tagged COSE_Sign1 with ``alg`` (an
    :class:`Algorithm`, its id or its name) in the protected header."""
    algorithm = algorithm_named(alg)
    if private_key.curve.name != algorithm.curve.name:
        raise ValueError(f"{algorithm.name} needs a {algorithm.curve.name} key")
    protected = dumps({HEADER_ALG: algorithm.id})
    der = private_key.sign(sig_structure(protected, payload), ec.ECDSA(algorithm.hash()))
    return encode_sign1(protected, payload, der_to_raw(der, algorithm.size), unprotected)


def algorithm_named(alg: Algorithm | int | str) -> Algorithm:
    if isinstance(alg, Algorithm):
        return alg
    for candidate in ALGORITHMS.values():
        if alg in (candidate.id, candidate.name):
            return candidate
    raise ValueError(f"unknown COSE algorithm {alg!r}: ES256, ES384 or ES512")


def raw_to_der(signature: bytes, size: int) -> bytes:
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    return encode_dss_signature(r, s)


def der_to_raw(signature: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# ------------------------------------------------------------------------- COSE_Key


def decode_cose_key(key: bytes | Mapping[Any, Any], what: str = "COSE_Key",
                    ) -> ec.EllipticCurvePublicKey:
    """An EC2 COSE_Key (kty 2; crv 1, 2 or 3; x and y) as a public key: from its CBOR
    bytes or its decoded map. EvidenceError when malformed or not on the curve."""
    value = loads(key, what) if isinstance(key, bytes | bytearray) else key
    if not isinstance(value, Mapping):
        raise EvidenceError(f"the {what} is not a map")
    if value.get(KEY_KTY) != KTY_EC2:
        raise EvidenceError(f"the {what} is not an EC2 key (kty {value.get(KEY_KTY)!r})")
    crv = value.get(KEY_CRV)
    algorithm = BY_CRV.get(crv) if type(crv) is int else None
    if algorithm is None:
        raise EvidenceError(f"the {what}'s curve {crv!r} is not P-256 (1), P-384 (2) or "
                            "P-521 (3)")
    x, y = value.get(KEY_X), value.get(KEY_Y)
    if not isinstance(x, bytes) or not isinstance(y, bytes):
        raise EvidenceError(f"the {what} lacks x (-2) or y (-3) as byte strings "
                            "(compressed points are not supported)")
    if len(x) != algorithm.size or len(y) != algorithm.size:
        raise EvidenceError(f"the {what}'s x and y must be {algorithm.size} bytes each")
    return point_to_key(b"\x04" + x + y, algorithm.curve(), what)


def encode_cose_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """``key`` as a deterministic EC2 COSE_Key ``{1: 2, -1: crv, -2: x, -3: y}``."""
    algorithm = BY_CURVE_NAME.get(key.curve.name)
    if algorithm is None:
        raise ValueError(f"no COSE curve for {key.curve.name}")
    numbers = key.public_numbers()
    return dumps({KEY_KTY: KTY_EC2, KEY_CRV: algorithm.crv,
                  KEY_X: numbers.x.to_bytes(algorithm.size, "big"),
                  KEY_Y: numbers.y.to_bytes(algorithm.size, "big")})


def point_to_key(point: bytes, curve: ec.EllipticCurve, what: str,
                 ) -> ec.EllipticCurvePublicKey:
    """An uncompressed SEC1 point ``0x04 || x || y`` as a key; EvidenceError when it is
    not one on ``curve``."""
    algorithm = BY_CURVE_NAME[curve.name]
    if len(point) != 1 + 2 * algorithm.size or point[:1] != b"\x04":
        raise EvidenceError(f"the {what} is not an uncompressed {curve.name} point "
                            f"(0x04 and {2 * algorithm.size} bytes)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise EvidenceError(f"the {what} is not a point on {curve.name}") from None


def raw_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """``key`` as an uncompressed SEC1 point ``0x04 || x || y``."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
