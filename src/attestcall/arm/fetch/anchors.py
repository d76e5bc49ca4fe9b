"""The trust anchor of a CCA platform token: the platform key (CPAK) the user supplies.

Three forms are read, as a file's bytes or its text:

- a PEM public key (SubjectPublicKeyInfo; several blocks give several keys; a PEM
  certificate gives its key), or one DER SubjectPublicKeyInfo;
- a JWK (``{"kty": "EC", "crv": "P-384", "x": ..., "y": ...}``; P-256, P-384, P-521);
- a trust-anchor store as rust-ccatoken writes it: a JSON list of ``{"pkey": JWK,
  "implementation-id": hex, "instance-id": hex}``, each key trusted only for the
  platform with those ids.

A key without ids (PEM, JWK) is trusted for any platform. Every unusable input is an
:class:`attestcall.errors.CollateralError`. Parsed content is cached by its bytes, so a
verifier given the same file content parses it once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.errors import CollateralError
from attestcall.lru import Lru

CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}
IMPLEMENTATION_ID_SIZE, INSTANCE_ID_SIZE = 32, 33
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
_CACHE: Lru[bytes, Anchors] = Lru(64)


@dataclass(frozen=True)
class Anchor:
    """One trusted platform key, for the platform with these ids (None: any)."""

    key: ec.EllipticCurvePublicKey
    implementation_id: bytes | None = None
    instance_id: bytes | None = None

    @functools.cached_property
    def point(self) -> bytes:
        """The key as an uncompressed point: what identifies it in caches."""
        return self.key.public_bytes(serialization.Encoding.X962,
                                     serialization.PublicFormat.UncompressedPoint)

    def covers(self, implementation_id: bytes, instance_id: bytes) -> bool:
        return (self.implementation_id in (None, implementation_id)
                and self.instance_id in (None, instance_id))

    def describe(self) -> str:
        curve = {c.name: name for name, (c, _) in CURVES.items()}.get(self.key.curve.name,
                                                                      self.key.curve.name)
        if self.implementation_id is None and self.instance_id is None:
            return f"a {curve} CPAK"
        return (f"the {curve} CPAK of implementation id "
                f"{(self.implementation_id or b'').hex() or 'any'}, instance id "
                f"{(self.instance_id or b'').hex() or 'any'}")


@dataclass(frozen=True)
class Anchors:
    """The trust anchors given: every key, with the platform each is for."""

    entries: tuple[Anchor, ...]

    def for_platform(self, implementation_id: bytes, instance_id: bytes) -> list[Anchor]:
        """The anchors that may sign the platform token with these ids."""
        return [a for a in self.entries if a.covers(implementation_id, instance_id)]

    def __len__(self) -> int:
        return len(self.entries)


def load(value: Any) -> Anchors | None:
    """The anchors in ``value``: None, a path (``os.PathLike``), the content as bytes or
    str, a parsed JWK or store (a mapping or list), a public key, an Anchor or Anchors."""
    if value is None or isinstance(value, Anchors):
        return value
    if isinstance(value, Anchor):
        return Anchors((value,))
    if isinstance(value, ec.EllipticCurvePublicKey):
        return Anchors((Anchor(value),))
    if isinstance(value, os.PathLike):
        try:
            value = Path(value).read_bytes()
        except OSError as exc:
            raise CollateralError(f"cannot read the CCA trust anchor {value}: "
                                  f"{exc.strerror}") from None
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return _CACHE.get_or_create(data, lambda: parse(data))
    if isinstance(value, Mapping | list | tuple):
        return _from_json(value)
    raise CollateralError(f"a CCA trust anchor is a PEM or DER public key, a JWK or a "
                          f"trust-anchor store, not {type(value).__name__}")


def parse(data: bytes) -> Anchors:
    """The anchors in a file's content (module documentation)."""
    text = data.strip()
    if not text:
        raise CollateralError("the CCA trust anchor is empty")
    if text.startswith(b"-----BEGIN"):
        blocks = [m.group(0) for m in _PEM.finditer(text)]
        if not blocks:
            raise CollateralError("the CCA trust anchor's PEM has no complete block")
        return Anchors(tuple(Anchor(_pem_key(block)) for block in blocks))
    if text[:1] in (b"{", b"["):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CollateralError(f"the CCA trust anchor is not valid JSON: {exc}") from None
        return _from_json(document)
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        raise CollateralError("the CCA trust anchor is neither a PEM or DER public key nor "
                              "JSON (a JWK or a trust-anchor store)") from None
    return Anchors((Anchor(_ec(key, "the DER public key")),))


def _pem_key(block: bytes) -> ec.EllipticCurvePublicKey:
    try:
        if block.startswith(b"-----BEGIN CERTIFICATE-----"):
            key: Any = x509.load_pem_x509_certificate(block).public_key()
        else:
            key = serialization.load_pem_public_key(block)
    except (ValueError, TypeError) as exc:
        raise CollateralError(f"the CCA trust anchor's PEM is not a public key or "
                              f"certificate: {exc}") from None
    return _ec(key, "the PEM key")


def _ec(key: Any, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {
            c.name for c, _ in CURVES.values()}:
        raise CollateralError(f"{what} is not a P-256, P-384 or P-521 key (a CPAK is one)")
    return key


def _from_json(document: Any) -> Anchors:
    entries: Iterable[Any]
    if isinstance(document, Mapping):
        if "pkey" not in document:  # a bare JWK
            return Anchors((Anchor(jwk_key(document)),))
        entries = [document]
    elif isinstance(document, list | tuple):
        entries = document
    else:
        raise CollateralError("the CCA trust anchor's JSON is not a JWK or a list of "
                              "trust anchors")
    anchors = tuple(_store_entry(entry, i) for i, entry in enumerate(entries))
    if not anchors:
        raise CollateralError("the CCA trust-anchor store is empty")
    return Anchors(anchors)


def _store_entry(entry: Any, index: int) -> Anchor:
    where = f"the CCA trust-anchor store's entry {index}"
    if not isinstance(entry, Mapping) or "pkey" not in entry:
        raise CollateralError(f"{where} is not an object with a \"pkey\" (a JWK)")
    return Anchor(jwk_key(entry["pkey"], where),
                  _hex_id(entry.get("implementation-id"), IMPLEMENTATION_ID_SIZE,
                          f"{where}'s implementation-id"),
                  _hex_id(entry.get("instance-id"), INSTANCE_ID_SIZE,
                          f"{where}'s instance-id"))


def _hex_id(value: Any, size: int, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise CollateralError(f"{what} is not {size * 2} hex digits")
    return raw


def jwk_key(jwk: Any, where: str = "the CCA trust anchor") -> ec.EllipticCurvePublicKey:
    """An EC JWK (RFC 7517/7518) as a public key; CollateralError when it is not one, or
    its point is not on its curve."""
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "EC":
        raise CollateralError(f"{where} is not an EC JWK (kty \"EC\")")
    crv = jwk.get("crv")
    curve = CURVES.get(crv) if isinstance(crv, str) else None
    if curve is None:
        raise CollateralError(f"{where}'s JWK curve {jwk.get('crv')!r} is not P-256, P-384 "
                              "or P-521")
    coordinates = [_b64url(jwk.get(name), f"{where}'s JWK {name}") for name in ("x", "y")]
    if any(len(c) != curve[1] for c in coordinates):
        raise CollateralError(f"{where}'s JWK x and y must be {curve[1]} bytes each")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            curve[0](), b"\x04" + coordinates[0] + coordinates[1])
    except ValueError:
        raise CollateralError(f"{where}'s JWK is not a point on {crv}") from None


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise CollateralError(f"{what} is missing or not a string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        raise CollateralError(f"{what} is not base64url") from None


def clear_caches() -> None:
    _CACHE.clear()
