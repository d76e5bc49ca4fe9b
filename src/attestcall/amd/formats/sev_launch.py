"""The legacy SEV launch, the guest owner's (tenant's) side: formats and crypto, no I/O.

The flow (SEV API specification, chapter 6):

1. The tenant verifies the platform's chain
   (:class:`~attestcall.amd.formats.sev_cert.PlatformChain`) and makes a GODH key pair
   (ECDH P-384). Z = the x coordinate of ECDH(GODH, PDH), big-endian, 48 bytes (as
   OpenSSL gives it; AMD's sev-tool and virtee/sev do the same).
2. master = KDF(Z, "sev-master-secret", NONCE); KEK = KDF(master, "sev-kek");
   KIK = KDF(master, "sev-kik"), 16 bytes each. KDF is NIST SP 800-108 counter mode with
   HMAC-SHA-256 as AMD's firmware implements it: PRF(key, i ‖ label ‖ 0x00 ‖ context ‖ L)
   with the counter i and the length L in bits as **little-endian** u32 (``cryptography``'s
   KBKDFHMAC encodes them big-endian, so it cannot be used here).
3. The tenant picks TEK and TIK (16 random bytes each). The session (0x80 bytes)::

       0x00 NONCE 16 | 0x10 WRAP_TK 32 = AES-128-CTR(KEK, WRAP_IV, TEK ‖ TIK)
       0x30 WRAP_IV 16 | 0x40 WRAP_MAC 32 = HMAC-SHA-256(KIK, WRAP_TK)
       0x60 POLICY_MAC 32 = HMAC-SHA-256(TIK, policy as u32 LE)

   LAUNCH_START takes the GODH certificate, the session and the policy.
4. LAUNCH_UPDATE_DATA hashes the guest's initial memory (SHA-256, the launch digest).
5. LAUNCH_MEASURE gives MEASURE ‖ MNONCE (48 bytes), MEASURE =
   HMAC-SHA-256(TIK, 0x04 ‖ API major ‖ API minor ‖ build ‖ policy u32 LE ‖ digest ‖ MNONCE).
6. LAUNCH_SECRET: header FLAGS u32 ‖ IV 16 ‖ MAC 32 (0x34 bytes), the data AES-128-CTR
   under TEK with IV, MAC = HMAC-SHA-256(TIK, 0x01 ‖ FLAGS ‖ IV ‖ guest length u32 ‖
   transport length u32 ‖ encrypted data ‖ MEASURE).

:class:`Tenant` runs the steps; :meth:`Tenant.provision` drives a whole launch against any
:class:`LaunchPort` (for example :class:`attestcall.amd.sim.sev.keep.SevLaunch`, or a proxy of it on
the deployment side). The functions ``open_session`` and ``open_secret`` are the
firmware's half, used by the simulator.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import constant_time, hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from attestcall.amd.client import efi_secret
from attestcall.amd.formats import sev_cert
from attestcall.errors import AttestcallError

LABEL_MASTER = b"sev-master-secret"
LABEL_KEK = b"sev-kek"
LABEL_KIK = b"sev-kik"
KEY_SIZE = 16
NONCE_SIZE = 16
MAC_SIZE = 32
SESSION_SIZE = 0x80
HEADER_SIZE = 0x34
MEASURE_SIZE = 48  # MEASURE 32 + MNONCE 16, as LAUNCH_MEASURE writes it
MEASURE_CONTEXT = 0x04
SECRET_CONTEXT = 0x01
FLAG_COMPRESSED = 0x1
SECRET_ALIGN = 16  # LAUNCH_SECRET lengths are multiples of 16

# Guest policy bits (SEV API, "guest policy"); bits 16..23 / 24..31: minimum API major/minor.
POLICY_NODBG = 0x01
POLICY_NOKS = 0x02
POLICY_ES = 0x04
POLICY_NOSEND = 0x08
POLICY_DOMAIN = 0x10
POLICY_SEV = 0x20
DEFAULT_POLICY = POLICY_NODBG | POLICY_NOKS


class LaunchError(AttestcallError):
    """A SEV launch step cannot go on (malformed input, or a check failed)."""


class MeasurementMismatch(LaunchError):
    """The launch measurement does not match the expected digest: no secret is sent."""


class NotVerified(LaunchError):
    """A secret was asked for before the launch measurement was verified."""


class MacMismatch(LaunchError):
    """A MAC computed under the session's keys does not match (firmware side)."""


# ------------------------------------------------------------------------- primitives


def kdf(key: bytes, label: bytes, context: bytes = b"", length: int = KEY_SIZE) -> bytes:
    """NIST SP 800-108 counter-mode KDF with HMAC-SHA-256, AMD's encoding (counter and L
    little-endian u32, a 0x00 separator between label and context)."""
    if not 0 < length <= 0xFFFFFFFF // 8:
        raise ValueError("KDF output length out of range")
    out = b""
    counter = 1
    while len(out) < length:
        out += hmac_sha256(key, struct.pack("<I", counter), label, b"\x00", context,
                           struct.pack("<I", length * 8))
        counter += 1
    return out[:length]


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def aes128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR with a 128-bit big-endian counter block starting at ``iv`` (encryption
    and decryption are the same)."""
    if len(key) != KEY_SIZE or len(iv) != 16:
        raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def shared_secret(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
    """Z: the ECDH x coordinate, big-endian, 48 bytes for P-384."""
    return private.exchange(ec.ECDH(), public)


def session_keys(z: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """(KEK, KIK) from the ECDH shared secret and the session nonce."""
    master = kdf(z, LABEL_MASTER, nonce)
    return kdf(master, LABEL_KEK), kdf(master, LABEL_KIK)


# ------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Session:
    """LAUNCH_START's session data (0x80 bytes)."""

    nonce: bytes
    wrap_tk: bytes
    wrap_iv: bytes
    wrap_mac: bytes
    policy_mac: bytes

    _FORMAT = struct.Struct("<16s32s16s32s32s")

    def pack(self) -> bytes:
        return self._FORMAT.pack(self.nonce, self.wrap_tk, self.wrap_iv, self.wrap_mac,
                                 self.policy_mac)

    @classmethod
    def parse(cls, data: bytes) -> Session:
        if len(data) != SESSION_SIZE:
            raise LaunchError(f"a session is {SESSION_SIZE} bytes, not {len(data)}")
        return cls(*cls._FORMAT.unpack(bytes(data)))


@dataclass(frozen=True)
class PacketHeader:
    """LAUNCH_SECRET's packet header (0x34 bytes)."""

    flags: int
    iv: bytes
    mac: bytes

    _FORMAT = struct.Struct("<I16s32s")

    def pack(self) -> bytes:
        return self._FORMAT.pack(self.flags, self.iv, self.mac)

    @classmethod
    def parse(cls, data: bytes) -> PacketHeader:
        if len(data) != HEADER_SIZE:
            raise LaunchError(f"a packet header is {HEADER_SIZE} bytes, not {len(data)}")
        return cls(*cls._FORMAT.unpack(bytes(data)))


@dataclass(frozen=True)
class MeasurementReport:
    """What the host hands the tenant after LAUNCH_MEASURE: the firmware's 48 bytes and
    the values the MAC covers that the tenant does not know (API version and build, from
    PLATFORM_STATUS) or should check (policy). None of it is trusted: the MAC decides.

    Wire format (attestcall's, 56 bytes): MEASURE 32 ‖ MNONCE 16 ‖ api_major u8 ‖
    api_minor u8 ‖ build u8 ‖ zero u8 ‖ policy u32 LE."""

    measure: bytes
    mnonce: bytes
    api_major: int
    api_minor: int
    build: int
    policy: int

    _FORMAT = struct.Struct("<32s16sBBBxI")
    SIZE = _FORMAT.size

    def pack(self) -> bytes:
        return self._FORMAT.pack(self.measure, self.mnonce, self.api_major, self.api_minor,
                                 self.build, self.policy)

    @classmethod
    def parse(cls, data: bytes) -> MeasurementReport:
        if len(data) != cls.SIZE:
            raise LaunchError(f"a measurement report is {cls.SIZE} bytes, not {len(data)}")
        return cls(*cls._FORMAT.unpack(bytes(data)))


def measurement_mac(tik: bytes, api_major: int, api_minor: int, build: int, policy: int,
                    digest: bytes, mnonce: bytes) -> bytes:
    """LAUNCH_MEASURE's MEASURE."""
    if len(digest) != 32 or len(mnonce) != NONCE_SIZE:
        raise LaunchError("the launch digest is 32 bytes and MNONCE 16")
    return hmac_sha256(tik, bytes([MEASURE_CONTEXT, api_major, api_minor, build]),
                       struct.pack("<I", policy), digest, mnonce)


def secret_mac(tik: bytes, flags: int, iv: bytes, guest_length: int, data: bytes,
               measure: bytes) -> bytes:
    """The LAUNCH_SECRET header's MAC over the encrypted ``data`` (uncompressed: the guest
    and transport lengths are equal)."""
    return hmac_sha256(tik, bytes([SECRET_CONTEXT]), struct.pack("<I", flags), iv,
                       struct.pack("<II", guest_length, len(data)), data, measure)


def wrap_session(z: bytes, tek: bytes, tik: bytes, policy: int, nonce: bytes,
                 iv: bytes) -> Session:
    kek, kik = session_keys(z, nonce)
    wrap_tk = aes128_ctr(kek, iv, tek + tik)
    return Session(nonce, wrap_tk, iv, hmac_sha256(kik, wrap_tk),
                   hmac_sha256(tik, struct.pack("<I", policy)))


def open_session(z: bytes, session: Session, policy: int) -> tuple[bytes, bytes]:
    """The firmware's half of LAUNCH_START: check WRAP_MAC, unwrap (TEK, TIK), check
    POLICY_MAC. Raises MacMismatch."""
    kek, kik = session_keys(z, session.nonce)
    if not constant_time.bytes_eq(hmac_sha256(kik, session.wrap_tk), session.wrap_mac):
        raise MacMismatch("the session's WRAP_MAC does not match")
    keys = aes128_ctr(kek, session.wrap_iv, session.wrap_tk)
    tek, tik = keys[:KEY_SIZE], keys[KEY_SIZE:]
    if not constant_time.bytes_eq(hmac_sha256(tik, struct.pack("<I", policy)),
                                   session.policy_mac):
        raise MacMismatch("the session's POLICY_MAC does not match the policy")
    return tek, tik


def seal_secret(tek: bytes, tik: bytes, measure: bytes, data: bytes,
                iv: bytes | None = None) -> tuple[PacketHeader, bytes]:
    """Encrypt ``data`` for LAUNCH_SECRET, bound to ``measure``."""
    if not data or len(data) % SECRET_ALIGN:
        raise LaunchError(f"a secret is a non-empty multiple of {SECRET_ALIGN} bytes")
    iv = os.urandom(16) if iv is None else iv
    packet = aes128_ctr(tek, iv, data)
    return PacketHeader(0, iv, secret_mac(tik, 0, iv, len(data), packet, measure)), packet


def open_secret(tek: bytes, tik: bytes, measure: bytes, header: PacketHeader,
                packet: bytes) -> bytes:
    """The firmware's half of LAUNCH_SECRET: check the header's MAC, decrypt. Raises
    MacMismatch, or LaunchError for a compressed packet (not supported)."""
    if header.flags & FLAG_COMPRESSED:
        raise LaunchError("compressed secrets are not supported")
    if header.flags:
        raise LaunchError(f"unknown packet flags {header.flags:#x}")
    expected = secret_mac(tik, header.flags, header.iv, len(packet), packet, measure)
    if not constant_time.bytes_eq(expected, header.mac):
        raise MacMismatch("the secret packet's header MAC does not match")
    return aes128_ctr(tek, header.iv, packet)


def pkcs8(private_key: PrivateKeyTypes) -> bytes:
    """``private_key`` as DER PKCS#8 (RFC 5208 PrivateKeyInfo), unencrypted."""
    return private_key.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def key_table(private_key: PrivateKeyTypes | bytes) -> bytes:
    """The EFI secret table carrying ``private_key`` (a key, or PKCS#8 DER bytes) under
    attestcall's GUID, padded for LAUNCH_SECRET."""
    der = private_key if isinstance(private_key, bytes | bytearray) else pkcs8(private_key)
    return efi_secret.build_table({efi_secret.ATTESTCALL_KEY_GUID: bytes(der)},
                                  align=SECRET_ALIGN)


# ------------------------------------------------------------------------- the tenant


@dataclass(frozen=True)
class LaunchStart:
    """What the tenant sends for LAUNCH_START (all of it public)."""

    godh_cert: bytes
    session: bytes
    policy: int


class LaunchPort(Protocol):
    """The host/firmware side of a launch as the tenant sees it: bytes in, bytes out."""

    def platform_chain(self) -> bytes: ...

    def start(self, godh_cert: bytes, session: bytes, policy: int) -> None: ...

    def measurement(self) -> MeasurementReport: ...

    def inject_secret(self, header: bytes, packet: bytes) -> None: ...


class Tenant:
    """The guest owner. Holds TEK/TIK for one launch; sends a secret only after a
    measurement matched. ``trusted_arks``: AMD-format ARK certificates to accept as roots
    (the simulator's only when asked for explicitly, see ``sev_sim.simulated_ark``)."""

    def __init__(self, trusted_arks: Sequence[bytes], policy: int = DEFAULT_POLICY):
        if not 0 <= policy <= 0xFFFFFFFF:
            raise LaunchError("the guest policy is a u32")
        self.trusted_arks = [bytes(a) for a in trusted_arks]
        self.policy = policy
        self._tek = os.urandom(KEY_SIZE)
        self._tik = os.urandom(KEY_SIZE)
        self._started = False
        self._measure: bytes | None = None
        self.pdh: sev_cert.SevCertificate | None = None

    def start(self, chain: bytes) -> LaunchStart:
        """Verify the chain and build LAUNCH_START's inputs. Raises ChainInvalid or
        SevCertError."""
        pdh = sev_cert.PlatformChain.parse(chain).verify(self.trusted_arks)
        if pdh.public_key().curve.name != "secp384r1":
            raise sev_cert.ChainInvalid("the PDH is not a P-384 key")
        godh = ec.generate_private_key(ec.SECP384R1())
        cert = sev_cert.new_certificate(sev_cert.USAGE_PDH, sev_cert.ALGO_ECDH_SHA256,
                                        godh.public_key(), pdh.api_major, pdh.api_minor)
        z = shared_secret(godh, pdh.public_key())
        session = wrap_session(z, self._tek, self._tik, self.policy, os.urandom(NONCE_SIZE),
                               os.urandom(16))
        self.pdh, self._started, self._measure = pdh, True, None
        return LaunchStart(cert.pack(), session.pack(), self.policy)

    def verify_measurement(self, report: MeasurementReport, expected_digest: bytes) -> None:
        """Accept the launch if its MEASURE is the MAC of ``expected_digest`` (the SHA-256 of
        what must have been loaded) under our TIK. Raises MeasurementMismatch."""
        if not self._started:
            raise NotVerified("the launch was not started")
        if report.policy != self.policy:
            raise MeasurementMismatch(f"the launch reports policy {report.policy:#x}, we "
                                      f"asked for {self.policy:#x}")
        expected = measurement_mac(self._tik, report.api_major, report.api_minor,
                                   report.build, self.policy, bytes(expected_digest),
                                   report.mnonce)
        if not constant_time.bytes_eq(expected, report.measure):
            self._measure = None
            raise MeasurementMismatch("the launch measurement does not match the expected "
                                      "digest")
        self._measure = report.measure

    def secret(self, data: bytes) -> tuple[bytes, bytes]:
        """(packet header, encrypted packet) for LAUNCH_SECRET. Raises NotVerified before
        a measurement matched."""
        if self._measure is None:
            raise NotVerified("refusing to send a secret before the measurement matched")
        header, packet = seal_secret(self._tek, self._tik, self._measure, data)
        return header.pack(), packet

    def key_secret(self, private_key: PrivateKeyTypes | bytes) -> tuple[bytes, bytes]:
        """The LAUNCH_SECRET packet delivering ``private_key`` as PKCS#8 (see key_table)."""
        return self.secret(key_table(private_key))

    def provision(self, launch: LaunchPort, expected_digest: bytes,
                  private_key: PrivateKeyTypes | bytes) -> PublicKeyTypes | None:
        """The whole provisioning against ``launch``: chain, LAUNCH_START, measurement check,
        secret. Returns the delivered key's public key (None when given raw bytes)."""
        start = self.start(launch.platform_chain())
        launch.start(start.godh_cert, start.session, start.policy)
        self.verify_measurement(launch.measurement(), expected_digest)
        header, packet = self.key_secret(private_key)
        launch.inject_secret(header, packet)
        if isinstance(private_key, bytes | bytearray):
            return None
        return private_key.public_key()


def launch_digest(*blocks: bytes) -> bytes:
    """SHA-256 over the LAUNCH_UPDATE_DATA blocks, in order."""
    digest = hashes.Hash(hashes.SHA256())
    for block in blocks:
        digest.update(block)
    return digest.finalize()
