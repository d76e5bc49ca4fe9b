"""The Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1).

Its value is a SEQUENCE of SEQUENCE { OID, value }, in this order::

    .1  PPID                OCTET STRING (16)
    .2  TCB                 SEQUENCE of SEQUENCE { .2.1 ... .2.16 INTEGER (SGX TCB
                            component SVNs), .2.17 PCESVN INTEGER, .2.18 CPUSVN OCTET STRING (16) }
    .3  PCE-ID              OCTET STRING (2)
    .4  FMSPC               OCTET STRING (6)
    .5  SGX Type            ENUMERATED (0 Standard, 1 Scalable, 2 Scalable with integrity)
    .6  PlatformInstanceID  OCTET STRING (16)       } only in certificates issued by the
    .7  Configuration       SEQUENCE of optional    } PCK Platform CA
                            { .7.1 dynamicPlatform, .7.2 cachedKeys, .7.3 SMTEnabled } BOOLEAN

Decoding is strict: the entries in this order, no duplicates or unknown entries, exact sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from attestcall import der
from attestcall.errors import AttestcallError

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
OID_PPID = SGX_EXTENSION_OID + ".1"
OID_TCB = SGX_EXTENSION_OID + ".2"
OID_PCESVN = OID_TCB + ".17"
OID_CPUSVN = OID_TCB + ".18"
OID_PCE_ID = SGX_EXTENSION_OID + ".3"
OID_FMSPC = SGX_EXTENSION_OID + ".4"
OID_SGX_TYPE = SGX_EXTENSION_OID + ".5"
OID_PLATFORM_INSTANCE_ID = SGX_EXTENSION_OID + ".6"
OID_CONFIGURATION = SGX_EXTENSION_OID + ".7"
OID_DYNAMIC_PLATFORM = OID_CONFIGURATION + ".1"
OID_CACHED_KEYS = OID_CONFIGURATION + ".2"
OID_SMT_ENABLED = OID_CONFIGURATION + ".3"

SGX_TYPE_STANDARD = 0
SGX_TYPE_SCALABLE = 1
SGX_TYPE_SCALABLE_WITH_INTEGRITY = 2

TCB_COMPONENTS = 16

T = TypeVar("T")


def tcb_comp_oid(index: int) -> str:
    """OID of SGX TCB component ``index`` (1..16)."""
    return f"{OID_TCB}.{index}"


class PckFormatError(AttestcallError, ValueError):
    """A PCK certificate whose SGX extension is missing or malformed."""


def _size(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise PckFormatError(f"{name} must be {size} bytes")


@dataclass(frozen=True)
class PckTcb:
    """The TCB a PCK certificate was issued for: 16 component SVNs, PCESVN, CPUSVN."""

    comp_svns: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes

    def __post_init__(self) -> None:
        if len(self.comp_svns) != TCB_COMPONENTS or not all(0 <= s <= 255 for s in self.comp_svns):
            raise PckFormatError("comp_svns must be 16 values in 0..255")
        if not 0 <= self.pce_svn <= 0xFFFF:
            raise PckFormatError("pce_svn must be in 0..65535")
        _size("cpu_svn", self.cpu_svn, 16)


@dataclass(frozen=True)
class PckConfiguration:
    """The Platform CA certificates' configuration entry; each flag may be absent."""

    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None


@dataclass(frozen=True)
class PckExtension:
    """The decoded SGX extension of a PCK certificate."""

    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: int = SGX_TYPE_STANDARD
    platform_instance_id: bytes | None = None
    configuration: PckConfiguration | None = None

    def __post_init__(self) -> None:
        _size("ppid", self.ppid, 16)
        _size("pce_id", self.pce_id, 2)
        _size("fmspc", self.fmspc, 6)
        if self.sgx_type not in (0, 1, 2):
            raise PckFormatError(f"unknown SGX type {self.sgx_type}")
        if self.platform_instance_id is not None:
            _size("platform_instance_id", self.platform_instance_id, 16)

    # -------------------------------------------------------------------- encoding

    def encode(self) -> bytes:
        """The DER extension value (what goes inside the certificate's extnValue)."""
        entry = _entry
        tcb = [
            entry(tcb_comp_oid(i), der.encode_integer(svn))
            for i, svn in enumerate(self.tcb.comp_svns, start=1)
        ]
        tcb.append(entry(OID_PCESVN, der.encode_integer(self.tcb.pce_svn)))
        tcb.append(entry(OID_CPUSVN, der.encode_octet_string(self.tcb.cpu_svn)))
        items = [
            entry(OID_PPID, der.encode_octet_string(self.ppid)),
            entry(OID_TCB, der.encode_sequence(*tcb)),
            entry(OID_PCE_ID, der.encode_octet_string(self.pce_id)),
            entry(OID_FMSPC, der.encode_octet_string(self.fmspc)),
            entry(OID_SGX_TYPE, der.encode_enumerated(self.sgx_type)),
        ]
        if self.platform_instance_id is not None:
            instance = der.encode_octet_string(self.platform_instance_id)
            items.append(entry(OID_PLATFORM_INSTANCE_ID, instance))
        if self.configuration is not None:
            flags = []
            for oid, value in (
                (OID_DYNAMIC_PLATFORM, self.configuration.dynamic_platform),
                (OID_CACHED_KEYS, self.configuration.cached_keys),
                (OID_SMT_ENABLED, self.configuration.smt_enabled),
            ):
                if value is not None:
                    flags.append(entry(oid, der.encode_boolean(value)))
            items.append(entry(OID_CONFIGURATION, der.encode_sequence(*flags)))
        return der.encode_sequence(*items)

    def to_x509_extension(self) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), self.encode())

    # -------------------------------------------------------------------- decoding

    @classmethod
    def decode(cls, value: bytes) -> PckExtension:
        """Decode the extension value; PckFormatError on any deviation."""
        try:
            return cls._decode(value)
        except der.DerError as exc:
            raise PckFormatError(f"SGX extension: {exc}") from exc

    @classmethod
    def _decode(cls, value: bytes) -> PckExtension:
        entries = _Entries(der.decode(value).children(), "SGX extension")
        ppid = entries.take(OID_PPID, der.Tlv.as_octet_string)
        tcb_entries = _Entries(entries.take(OID_TCB, der.Tlv.children), "TCB")
        comps = tuple(tcb_entries.take(tcb_comp_oid(i), der.Tlv.as_integer) for i in range(1, 17))
        pce_svn = tcb_entries.take(OID_PCESVN, der.Tlv.as_integer)
        cpu_svn = tcb_entries.take(OID_CPUSVN, der.Tlv.as_octet_string)
        tcb_entries.end()
        pce_id = entries.take(OID_PCE_ID, der.Tlv.as_octet_string)
        fmspc = entries.take(OID_FMSPC, der.Tlv.as_octet_string)
        sgx_type = entries.take(OID_SGX_TYPE, der.Tlv.as_enumerated)
        instance = entries.take_optional(OID_PLATFORM_INSTANCE_ID, der.Tlv.as_octet_string)
        configuration = None
        conf_items = entries.take_optional(OID_CONFIGURATION, der.Tlv.children)
        if conf_items is not None:
            conf = _Entries(conf_items, "configuration")
            configuration = PckConfiguration(
                conf.take_optional(OID_DYNAMIC_PLATFORM, der.Tlv.as_boolean),
                conf.take_optional(OID_CACHED_KEYS, der.Tlv.as_boolean),
                conf.take_optional(OID_SMT_ENABLED, der.Tlv.as_boolean),
            )
            conf.end()
        entries.end()
        tcb = PckTcb(comps, pce_svn, cpu_svn)
        return cls(ppid, tcb, pce_id, fmspc, sgx_type, instance, configuration)

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> PckExtension:
        try:
            oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
            ext = certificate.extensions.get_extension_for_oid(oid)
        except x509.ExtensionNotFound as exc:
            raise PckFormatError("certificate has no SGX extension") from exc
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise PckFormatError("SGX extension was not left raw by the parser")
        return cls.decode(value.value)


def _entry(oid: str, encoded_value: bytes) -> bytes:
    return der.encode_sequence(der.encode_oid(oid), encoded_value)


class _Entries:
    """Walks SEQUENCE { OID, value } entries in their required order."""

    def __init__(self, items: list[der.Tlv], where: str) -> None:
        self.items = items
        self.where = where
        self.index = 0

    def _peek(self) -> tuple[str, der.Tlv] | None:
        if self.index >= len(self.items):
            return None
        pair = self.items[self.index].children()
        if len(pair) != 2:
            raise PckFormatError(f"{self.where}: an entry must be SEQUENCE {{OID, value}}")
        return pair[0].as_oid(), pair[1]

    def take_optional(self, oid: str, convert: Callable[[der.Tlv], T]) -> T | None:
        peeked = self._peek()
        if peeked is None or peeked[0] != oid:
            return None
        self.index += 1
        return convert(peeked[1])

    def take(self, oid: str, convert: Callable[[der.Tlv], T]) -> T:
        peeked = self._peek()
        if peeked is None:
            raise PckFormatError(f"{self.where}: missing {oid}")
        if peeked[0] != oid:
            raise PckFormatError(f"{self.where}: expected {oid}, found {peeked[0]}")
        self.index += 1
        return convert(peeked[1])

    def end(self) -> None:
        peeked = self._peek()
        if peeked is not None:
            raise PckFormatError(f"{self.where}: unexpected entry {peeked[0]}")
