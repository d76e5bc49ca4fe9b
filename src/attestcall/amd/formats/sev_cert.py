"""AMD's legacy SEV certificates (SEV API specification, appendix C), formats and signatures.

Two formats, both little-endian:

**SEV certificate** (PEK, PDH, CEK, OCA, and the guest owner's GODH), always 0x824 bytes::

    0x000  version      u32   1
    0x004  api_major    u8    firmware API version that made it
    0x005  api_minor    u8
    0x006  reserved     2     zero
    0x008  pubkey usage u32   OCA 0x1001, PEK 0x1002, PDH 0x1003, CEK 0x1004
    0x00C  pubkey algo  u32   ECDSA-SHA256 2, ECDH-SHA256 3, ... (ALGO_*)
    0x010  pubkey       0x404 ECC: curve u32 (P-256 1, P-384 2), Qx 72 bytes, Qy 72 bytes
                              (little-endian, zero-padded), 0x370 reserved zero bytes
    0x414  sig1 usage   u32   usage of the key that signed (0x1000 = empty slot)
    0x418  sig1 algo    u32
    0x41C  sig1         0x200 ECDSA: R 72 bytes, S 72 bytes (little-endian), zeros;
                              RSA: the RSASSA-PSS signature, byte-reversed
    0x61C  sig2 usage, algo, signature as sig1

Each signature covers the body, bytes 0x000..0x413, hashed with the signature algorithm's
hash (SHA-256 for ECDSA-SHA256, which AMD firmware uses on its P-384 keys).

**AMD certificate** (ARK, ASK), the RSA format AMD publishes::

    0x00  version        u32  1
    0x04  key_id         16
    0x14  certifying_id  16   the signer's key_id (the ARK's own: self-signed)
    0x24  key_usage      u32  ARK 0x00, ASK 0x13
    0x28  reserved       16   zero
    0x38  pubexp_bits    u32  2048 or 4096 (the exponent is zero-padded to that size)
    0x3C  modulus_bits   u32  2048 or 4096
    0x40  pubexp, modulus (little-endian), then the signature (byte-reversed RSASSA-PSS
          SHA-384, salt 48, over everything before it), as long as the modulus.

The chain: ARK (self) -> ASK -> CEK -> PEK <- OCA (self-signed), PEK -> PDH. The firmware's
PDH_CERT_EXPORT gives PDH and (PEK, OCA, CEK); AMD's KDS gives ASK then ARK.
:class:`PlatformChain` carries all six in that order (PDH, PEK, OCA, CEK, ASK, ARK).

Facts from AMD's own code (amd/AMD-ASPFW ``sev_cert.h``, ``amd_cert.c``; AMDESE/sev-tool
``sevapi.h``); no text or code of theirs is copied.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attestcall.errors import AttestcallError

# Key usages (SEV API appendix C).
USAGE_ARK = 0x00
USAGE_ASK = 0x13
USAGE_INVALID = 0x1000  # an empty signature slot
USAGE_OCA = 0x1001
USAGE_PEK = 0x1002
USAGE_PDH = 0x1003
USAGE_CEK = 0x1004
USAGES = {USAGE_ARK: "ARK", USAGE_ASK: "ASK", USAGE_INVALID: "none", USAGE_OCA: "OCA",
          USAGE_PEK: "PEK", USAGE_PDH: "PDH", USAGE_CEK: "CEK"}

# Algorithms.
ALGO_INVALID = 0x000
ALGO_RSA_SHA256 = 0x001
ALGO_ECDSA_SHA256 = 0x002
ALGO_ECDH_SHA256 = 0x003
ALGO_RSA_SHA384 = 0x101
ALGO_ECDSA_SHA384 = 0x102
ALGO_ECDH_SHA384 = 0x103
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    ALGO_RSA_SHA256: hashes.SHA256, ALGO_ECDSA_SHA256: hashes.SHA256,
    ALGO_ECDH_SHA256: hashes.SHA256, ALGO_RSA_SHA384: hashes.SHA384,
    ALGO_ECDSA_SHA384: hashes.SHA384, ALGO_ECDH_SHA384: hashes.SHA384,
}
_RSA_ALGOS = (ALGO_RSA_SHA256, ALGO_RSA_SHA384)
_ECDSA_ALGOS = (ALGO_ECDSA_SHA256, ALGO_ECDSA_SHA384)
_ECDH_ALGOS = (ALGO_ECDH_SHA256, ALGO_ECDH_SHA384)

CURVE_P256 = 1
CURVE_P384 = 2
_CURVES: dict[int, ec.EllipticCurve] = {CURVE_P256: ec.SECP256R1(), CURVE_P384: ec.SECP384R1()}

VERSION = 1
CERT_SIZE = 0x824
BODY_SIZE = 0x414
KEY_SIZE = 0x404
SIG_SIZE = 0x200
COMPONENT_SIZE = 72  # 576 bits: room for P-521 components, zero-padded
_BODY_HEAD = struct.Struct("<IBBHII")  # version, api major, minor, reserved, usage, algo
_SLOT_HEAD = struct.Struct("<II")  # usage, algo
SLOT_SIZE = _SLOT_HEAD.size + SIG_SIZE

AMD_VERSION = 1
AMD_ID_SIZE = 16
_AMD_FIXED = struct.Struct("<I16s16sI16sII")
AMD_FIXED_SIZE = _AMD_FIXED.size  # 0x40
AMD_KEY_BITS = (2048, 4096)
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


class SevCertError(AttestcallError):
    """A SEV or AMD certificate is malformed (wrong size, version, usage, algorithm, key)."""


class SignatureInvalid(SevCertError):
    """A signature does not verify, or the expected signer's slot is absent."""


class ChainInvalid(SevCertError):
    """The platform's certificate chain does not lead to a trusted ARK."""


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def _int_le(data: bytes) -> int:
    return int.from_bytes(data, "little")


# ---------------------------------------------------------------------- SEV certificates


@dataclass(frozen=True)
class SignatureSlot:
    usage: int
    algo: int
    signature: bytes  # SIG_SIZE bytes

    @property
    def empty(self) -> bool:
        return self.usage == USAGE_INVALID

    def pack(self) -> bytes:
        return _SLOT_HEAD.pack(self.usage, self.algo) + self.signature


EMPTY_SLOT = SignatureSlot(USAGE_INVALID, ALGO_INVALID, bytes(SIG_SIZE))


@dataclass(frozen=True)
class SevCertificate:
    """One SEV certificate (0x824 bytes). ``key`` is the raw 0x404-byte public key field."""

    api_major: int
    api_minor: int
    usage: int
    algo: int
    key: bytes
    sig1: SignatureSlot = EMPTY_SLOT
    sig2: SignatureSlot = EMPTY_SLOT
    version: int = VERSION

    @classmethod
    def parse(cls, data: bytes) -> SevCertificate:
        """Strict: exactly 0x824 bytes, version 1, zero reserved bytes, a known usage and
        algorithm, an ECC key on a known curve with zero padding, well-formed slots."""
        data = bytes(data)
        if len(data) != CERT_SIZE:
            raise SevCertError(f"a SEV certificate is {CERT_SIZE} bytes, not {len(data)}")
        version, major, minor, reserved, usage, algo = _BODY_HEAD.unpack_from(data, 0)
        if version != VERSION:
            raise SevCertError(f"SEV certificate version {version}, expected {VERSION}")
        if reserved:
            raise SevCertError("SEV certificate reserved bytes are not zero")
        if usage not in (USAGE_OCA, USAGE_PEK, USAGE_PDH, USAGE_CEK):
            raise SevCertError(f"SEV certificate key usage {usage:#x} is not OCA/PEK/PDH/CEK")
        if algo not in _ECDSA_ALGOS + _ECDH_ALGOS:
            raise SevCertError(f"SEV certificate key algorithm {algo:#x} is not ECDSA/ECDH")
        key = data[_BODY_HEAD.size : BODY_SIZE]
        cert = cls(major, minor, usage, algo, key,
                   _parse_slot(data, BODY_SIZE), _parse_slot(data, BODY_SIZE + SLOT_SIZE),
                   version)
        cert.public_key()  # checks the key field
        return cert

    def body(self) -> bytes:
        return _BODY_HEAD.pack(self.version, self.api_major, self.api_minor, 0, self.usage,
                               self.algo) + self.key

    def pack(self) -> bytes:
        return self.body() + self.sig1.pack() + self.sig2.pack()

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return decode_ecc_key(self.key)

    def slots(self) -> tuple[SignatureSlot, SignatureSlot]:
        return (self.sig1, self.sig2)


def _parse_slot(data: bytes, offset: int) -> SignatureSlot:
    usage, algo = _SLOT_HEAD.unpack_from(data, offset)
    signature = data[offset + _SLOT_HEAD.size : offset + SLOT_SIZE]
    if usage == USAGE_INVALID:
        if algo != ALGO_INVALID or any(signature):
            raise SevCertError("an empty signature slot holds data")
        return EMPTY_SLOT
    if usage not in USAGES or algo not in _RSA_ALGOS + _ECDSA_ALGOS:
        raise SevCertError(f"signature slot usage {usage:#x} algorithm {algo:#x} unknown")
    return SignatureSlot(usage, algo, signature)


def encode_ecc_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 0x404-byte ECC public key field for ``key`` (P-256 or P-384)."""
    curve = {"secp256r1": CURVE_P256, "secp384r1": CURVE_P384}.get(key.curve.name)
    if curve is None:
        raise SevCertError(f"SEV certificates carry P-256 or P-384 keys, not {key.curve.name}")
    numbers = key.public_numbers()
    field = struct.pack("<I", curve) + _le(numbers.x, COMPONENT_SIZE) + _le(numbers.y,
                                                                             COMPONENT_SIZE)
    return field + bytes(KEY_SIZE - len(field))


def decode_ecc_key(field: bytes) -> ec.EllipticCurvePublicKey:
    if len(field) != KEY_SIZE:
        raise SevCertError(f"an ECC key field is {KEY_SIZE} bytes")
    (curve_id,) = struct.unpack_from("<I", field, 0)
    curve = _CURVES.get(curve_id)
    if curve is None:
        raise SevCertError(f"unknown ECC curve id {curve_id}")
    size = (curve.key_size + 7) // 8
    qx = field[4 : 4 + COMPONENT_SIZE]
    qy = field[4 + COMPONENT_SIZE : 4 + 2 * COMPONENT_SIZE]
    if any(qx[size:]) or any(qy[size:]) or any(field[4 + 2 * COMPONENT_SIZE :]):
        raise SevCertError("ECC key padding is not zero")
    try:
        return ec.EllipticCurvePublicNumbers(_int_le(qx), _int_le(qy), curve).public_key()
    except ValueError as exc:
        raise SevCertError(f"the ECC key is not a point on {curve.name}") from exc


def new_certificate(usage: int, algo: int, key: ec.EllipticCurvePublicKey,
                    api_major: int = 0, api_minor: int = 0) -> SevCertificate:
    """An unsigned SEV certificate (both slots empty)."""
    return SevCertificate(api_major, api_minor, usage, algo, encode_ecc_key(key))


def _hash(algo: int) -> hashes.HashAlgorithm:
    return _HASHES[algo]()


def sign(cert: SevCertificate, signer_usage: int,
         key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
         algo: int | None = None) -> SevCertificate:
    """``cert`` with the signature of ``key`` (whose usage is ``signer_usage``) in its
    first empty slot. ECDSA keys default to ECDSA-SHA256, RSA keys to RSA-SHA384."""
    body = cert.body()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algo = ALGO_ECDSA_SHA256 if algo is None else algo
        if algo not in _ECDSA_ALGOS:
            raise SevCertError(f"an EC key signs with ECDSA, not algorithm {algo:#x}")
        r, s = decode_dss_signature(key.sign(body, ec.ECDSA(_hash(algo))))
        raw = _le(r, COMPONENT_SIZE) + _le(s, COMPONENT_SIZE)
    elif isinstance(key, rsa.RSAPrivateKey):
        algo = ALGO_RSA_SHA384 if algo is None else algo
        if algo not in _RSA_ALGOS or key.key_size > SIG_SIZE * 8:
            raise SevCertError(f"an RSA key up to 4096 bits signs with RSA, not {algo:#x}")
        raw = key.sign(body, _pss(algo), _hash(algo))[::-1]
    else:
        raise SevCertError("SEV certificates are signed with EC or RSA keys")
    slot = SignatureSlot(signer_usage, algo, raw + bytes(SIG_SIZE - len(raw)))
    if cert.sig1.empty:
        return replace(cert, sig1=slot)
    if cert.sig2.empty:
        return replace(cert, sig2=slot)
    raise SevCertError("both signature slots are taken")


def _pss(algo: int) -> padding.PSS:
    digest = _hash(algo)
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)


def verify(cert: SevCertificate, signer_usage: int,
           key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> None:
    """Check that the key with usage ``signer_usage`` signed ``cert``: one slot naming that
    usage must hold a valid signature by ``key``. Raises SignatureInvalid."""
    slots = [slot for slot in cert.slots() if slot.usage == signer_usage]
    if not slots:
        raise SignatureInvalid(f"{USAGES.get(cert.usage)} certificate has no signature by "
                               f"the {USAGES.get(signer_usage, hex(signer_usage))}")
    body = cert.body()
    for slot in slots:
        try:
            _verify_slot(slot, body, key)
            return
        except (InvalidSignature, ValueError):
            continue
    raise SignatureInvalid(f"the {USAGES.get(signer_usage)} signature on the "
                           f"{USAGES.get(cert.usage)} certificate does not verify")


def _verify_slot(slot: SignatureSlot, body: bytes,
                 key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> None:
    if slot.algo in _ECDSA_ALGOS and isinstance(key, ec.EllipticCurvePublicKey):
        r = _int_le(slot.signature[:COMPONENT_SIZE])
        s = _int_le(slot.signature[COMPONENT_SIZE : 2 * COMPONENT_SIZE])
        if any(slot.signature[2 * COMPONENT_SIZE :]):
            raise InvalidSignature
        key.verify(encode_dss_signature(r, s), body, ec.ECDSA(_hash(slot.algo)))
    elif slot.algo in _RSA_ALGOS and isinstance(key, rsa.RSAPublicKey):
        size = key.key_size // 8
        if any(slot.signature[size:]):
            raise InvalidSignature
        key.verify(slot.signature[:size][::-1], body, _pss(slot.algo), _hash(slot.algo))
    else:
        raise InvalidSignature


# ---------------------------------------------------------------------- AMD certificates


@dataclass(frozen=True)
class AmdCertificate:
    """An ARK or ASK in AMD's RSA format. Integers are kept little-endian as stored."""

    key_id: bytes
    certifying_id: bytes
    usage: int
    pubexp: bytes
    modulus: bytes
    signature: bytes
    version: int = AMD_VERSION

    @classmethod
    def parse_prefix(cls, data: bytes) -> tuple[AmdCertificate, bytes]:
        """The certificate at the start of ``data`` and the bytes after it."""
        data = bytes(data)
        if len(data) < AMD_FIXED_SIZE:
            raise SevCertError("an AMD certificate is shorter than its fixed header")
        version, key_id, cert_id, usage, reserved, exp_bits, mod_bits = \
            _AMD_FIXED.unpack_from(data, 0)
        if version != AMD_VERSION:
            raise SevCertError(f"AMD certificate version {version}, expected {AMD_VERSION}")
        if usage not in (USAGE_ARK, USAGE_ASK):
            raise SevCertError(f"AMD certificate usage {usage:#x} is not ARK or ASK")
        if any(reserved):
            raise SevCertError("AMD certificate reserved bytes are not zero")
        if exp_bits not in AMD_KEY_BITS or mod_bits not in AMD_KEY_BITS:
            raise SevCertError(f"AMD certificate key sizes {exp_bits}/{mod_bits} bits are "
                               f"not 2048 or 4096")
        exp_len, mod_len = exp_bits // 8, mod_bits // 8
        end = AMD_FIXED_SIZE + exp_len + 2 * mod_len
        if len(data) < end:
            raise SevCertError(f"AMD certificate truncated: {len(data)} of {end} bytes")
        at = AMD_FIXED_SIZE
        pubexp, modulus = data[at : at + exp_len], data[at + exp_len : at + exp_len + mod_len]
        signature = data[at + exp_len + mod_len : end]
        cert = cls(key_id, cert_id, usage, pubexp, modulus, signature, version)
        cert.public_key()
        return cert, data[end:]

    @classmethod
    def parse(cls, data: bytes) -> AmdCertificate:
        cert, rest = cls.parse_prefix(data)
        if rest:
            raise SevCertError(f"{len(rest)} bytes after the AMD certificate")
        return cert

    def signed_bytes(self) -> bytes:
        return _AMD_FIXED.pack(self.version, self.key_id, self.certifying_id, self.usage,
                               bytes(16), len(self.pubexp) * 8, len(self.modulus) * 8) + \
            self.pubexp + self.modulus

    def pack(self) -> bytes:
        return self.signed_bytes() + self.signature

    def public_key(self) -> rsa.RSAPublicKey:
        try:
            return rsa.RSAPublicNumbers(_int_le(self.pubexp), _int_le(self.modulus)).public_key()
        except ValueError as exc:
            raise SevCertError(f"the AMD certificate's RSA key is invalid: {exc}") from exc


def new_amd_certificate(usage: int, key_id: bytes, certifying_id: bytes,
                        key: rsa.RSAPublicKey) -> AmdCertificate:
    """An unsigned AMD certificate (the signature all zero, as long as the modulus)."""
    if len(key_id) != AMD_ID_SIZE or len(certifying_id) != AMD_ID_SIZE:
        raise SevCertError("AMD key ids are 16 bytes")
    if key.key_size not in AMD_KEY_BITS:
        raise SevCertError("AMD certificates carry RSA-2048 or RSA-4096 keys")
    size = key.key_size // 8
    numbers = key.public_numbers()
    return AmdCertificate(key_id, certifying_id, usage, _le(numbers.e, size),
                          _le(numbers.n, size), bytes(size))


def sign_amd(cert: AmdCertificate, key: rsa.RSAPrivateKey) -> AmdCertificate:
    if key.key_size // 8 != len(cert.modulus):
        raise SevCertError("this format needs the signer's modulus as long as the subject's")
    signature = key.sign(cert.signed_bytes(), AMD_PSS, hashes.SHA384())
    return replace(cert, signature=signature[::-1])


def verify_amd(cert: AmdCertificate, issuer: AmdCertificate) -> None:
    """``issuer`` signed ``cert`` and ``cert`` names it as certifier. Raises SignatureInvalid."""
    if cert.certifying_id != issuer.key_id:
        raise SignatureInvalid("the AMD certificate's certifying id is not the issuer's key id")
    try:
        issuer.public_key().verify(cert.signature[::-1], cert.signed_bytes(), AMD_PSS,
                                   hashes.SHA384())
    except InvalidSignature:
        raise SignatureInvalid(f"the AMD {USAGES[cert.usage]} signature does not "
                               f"verify") from None


# ---------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class PlatformChain:
    """What the platform owner exports: PDH, PEK, OCA, CEK (firmware), ASK, ARK (AMD)."""

    pdh: SevCertificate
    pek: SevCertificate
    oca: SevCertificate
    cek: SevCertificate
    ask: AmdCertificate
    ark: AmdCertificate

    def pack(self) -> bytes:
        return b"".join(c.pack() for c in (self.pdh, self.pek, self.oca, self.cek, self.ask,
                                            self.ark))

    @classmethod
    def parse(cls, data: bytes) -> PlatformChain:
        data = bytes(data)
        if len(data) < 4 * CERT_SIZE:
            raise SevCertError("the platform chain is shorter than its four SEV certificates")
        pdh, pek, oca, cek = (SevCertificate.parse(data[i * CERT_SIZE : (i + 1) * CERT_SIZE])
                              for i in range(4))
        ask, rest = AmdCertificate.parse_prefix(data[4 * CERT_SIZE :])
        ark = AmdCertificate.parse(rest)
        return cls(pdh, pek, oca, cek, ask, ark)

    def verify(self, trusted_arks: Iterable[bytes]) -> SevCertificate:
        """Check every link up to an ARK in ``trusted_arks`` (AMD-format bytes); return the
        PDH certificate. Raises ChainInvalid naming the first link that fails."""
        ark_bytes = self.ark.pack()
        if not any(bytes(t) == ark_bytes for t in trusted_arks):
            raise ChainInvalid("the chain's ARK is not a trusted root")
        expected = ((self.ark, USAGE_ARK), (self.ask, USAGE_ASK))
        for cert, usage in expected:
            if cert.usage != usage:
                raise ChainInvalid(f"expected an {USAGES[usage]}, got usage {cert.usage:#x}")
        for cert, usage, algos in ((self.cek, USAGE_CEK, _ECDSA_ALGOS),
                                   (self.pek, USAGE_PEK, _ECDSA_ALGOS),
                                   (self.oca, USAGE_OCA, _ECDSA_ALGOS),
                                   (self.pdh, USAGE_PDH, _ECDH_ALGOS)):
            if cert.usage != usage or cert.algo not in algos:
                raise ChainInvalid(f"expected a {USAGES[usage]} certificate, got usage "
                                   f"{cert.usage:#x} algorithm {cert.algo:#x}")
        try:
            if self.ark.certifying_id != self.ark.key_id:
                raise SignatureInvalid("the ARK is not self-certified")
            verify_amd(self.ark, self.ark)
            verify_amd(self.ask, self.ark)
            verify(self.cek, USAGE_ASK, self.ask.public_key())
            verify(self.oca, USAGE_OCA, self.oca.public_key())
            verify(self.pek, USAGE_CEK, self.cek.public_key())
            verify(self.pek, USAGE_OCA, self.oca.public_key())
            verify(self.pdh, USAGE_PEK, self.pek.public_key())
        except SignatureInvalid as exc:
            raise ChainInvalid(str(exc)) from exc
        return self.pdh
