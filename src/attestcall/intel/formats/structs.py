"""Intel SGX architectural structures: REPORT body, REPORT and TARGETINFO.

Formats only, no I/O. Integers are little-endian as the hardware writes them. ``unpack``
is strict: the exact length and zero reserved fields, else :class:`SgxFormatError`.
Layouts follow the Intel SDM (vol. 3D, "SGX data structures").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from attestcall.errors import AttestcallError

# ATTRIBUTES.FLAGS bits
ATTR_INIT = 0x01
ATTR_DEBUG = 0x02
ATTR_MODE64BIT = 0x04
ATTR_PROVISIONKEY = 0x10
ATTR_EINITTOKEN_KEY = 0x20
ATTR_KSS = 0x80


class SgxFormatError(AttestcallError, ValueError):
    """Bytes that are not a well-formed SGX structure (length, reserved bytes, field size)."""


def _check_size(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise SgxFormatError(f"{name} must be {size} bytes")


def _check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise SgxFormatError(f"{name} must fit in {bits} bits")


def _check_zero(name: str, value: bytes) -> None:
    if any(value):
        raise SgxFormatError(f"{name} must be zero")


# cpusvn 16, miscselect 4, reserved 12, isvextprodid 16, attributes 16, mrenclave 32,
# reserved 32, mrsigner 32, reserved 32, configid 64, isvprodid 2, isvsvn 2, configsvn 2,
# reserved 42, isvfamilyid 16, reportdata 64
_BODY = struct.Struct("<16sI12s16s16s32s32s32s32s64sHHH42s16s64s")
_TARGETINFO = struct.Struct("<32s16sBBHI8s64s384s")


@dataclass(frozen=True)
class ReportBody:
    """The 384-byte REPORT body (sgx_report_body_t); also the enclave part of a v3 quote."""

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    SIZE = 384

    def __post_init__(self) -> None:
        _check_size("cpu_svn", self.cpu_svn, 16)
        _check_uint("misc_select", self.misc_select, 32)
        _check_size("isv_ext_prod_id", self.isv_ext_prod_id, 16)
        _check_size("attributes", self.attributes, 16)
        _check_size("mr_enclave", self.mr_enclave, 32)
        _check_size("mr_signer", self.mr_signer, 32)
        _check_size("config_id", self.config_id, 64)
        _check_uint("isv_prod_id", self.isv_prod_id, 16)
        _check_uint("isv_svn", self.isv_svn, 16)
        _check_uint("config_svn", self.config_svn, 16)
        _check_size("isv_family_id", self.isv_family_id, 16)
        _check_size("report_data", self.report_data, 64)

    @property
    def attribute_flags(self) -> int:
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def xfrm(self) -> int:
        return int.from_bytes(self.attributes[8:], "little")

    @property
    def debug(self) -> bool:
        return bool(self.attribute_flags & ATTR_DEBUG)

    def pack(self) -> bytes:
        return _BODY.pack(
            self.cpu_svn, self.misc_select, bytes(12), self.isv_ext_prod_id, self.attributes,
            self.mr_enclave, bytes(32), self.mr_signer, bytes(32), self.config_id,
            self.isv_prod_id, self.isv_svn, self.config_svn, bytes(42), self.isv_family_id,
            self.report_data,
        )  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes) -> ReportBody:
        if len(data) != cls.SIZE:
            raise SgxFormatError(f"REPORT body must be {cls.SIZE} bytes, got {len(data)}")
        (cpu_svn, misc_select, res1, ext_prod, attributes, mr_enclave, res2, mr_signer, res3,
         config_id, prod_id, isv_svn, config_svn, res4, family, report_data) = _BODY.unpack(
            bytes(data)
        )  # fmt: skip
        for i, reserved in enumerate((res1, res2, res3, res4), start=1):
            _check_zero(f"REPORT body reserved{i}", reserved)
        return cls(
            cpu_svn, misc_select, ext_prod, attributes, mr_enclave, mr_signer, config_id,
            prod_id, isv_svn, config_svn, family, report_data,
        )  # fmt: skip


@dataclass(frozen=True)
class Report:
    """The 432-byte REPORT EREPORT writes: body, KEYID, and the AES-128-CMAC over the body."""

    body: ReportBody
    key_id: bytes
    mac: bytes

    SIZE = 432

    def __post_init__(self) -> None:
        _check_size("key_id", self.key_id, 32)
        _check_size("mac", self.mac, 16)

    def pack(self) -> bytes:
        return self.body.pack() + self.key_id + self.mac

    @classmethod
    def unpack(cls, data: bytes) -> Report:
        if len(data) != cls.SIZE:
            raise SgxFormatError(f"REPORT must be {cls.SIZE} bytes, got {len(data)}")
        data = bytes(data)
        return cls(ReportBody.unpack(data[:384]), data[384:416], data[416:432])


@dataclass(frozen=True)
class TargetInfo:
    """The 512-byte TARGETINFO naming the enclave a REPORT is for."""

    mr_enclave: bytes
    attributes: bytes
    cet_attributes: int = 0
    config_svn: int = 0
    misc_select: int = 0
    config_id: bytes = bytes(64)

    SIZE = 512

    def __post_init__(self) -> None:
        _check_size("mr_enclave", self.mr_enclave, 32)
        _check_size("attributes", self.attributes, 16)
        _check_uint("cet_attributes", self.cet_attributes, 8)
        _check_uint("config_svn", self.config_svn, 16)
        _check_uint("misc_select", self.misc_select, 32)
        _check_size("config_id", self.config_id, 64)

    def pack(self) -> bytes:
        return _TARGETINFO.pack(
            self.mr_enclave, self.attributes, self.cet_attributes, 0, self.config_svn,
            self.misc_select, bytes(8), self.config_id, bytes(384),
        )  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes) -> TargetInfo:
        if len(data) != cls.SIZE:
            raise SgxFormatError(f"TARGETINFO must be {cls.SIZE} bytes, got {len(data)}")
        (mr_enclave, attributes, cet, res1, config_svn, misc_select, res2, config_id,
         res3) = _TARGETINFO.unpack(bytes(data))  # fmt: skip
        if res1:
            raise SgxFormatError("TARGETINFO reserved1 must be zero")
        _check_zero("TARGETINFO reserved2", res2)
        _check_zero("TARGETINFO reserved3", res3)
        return cls(mr_enclave, attributes, cet, config_svn, misc_select, config_id)


def attributes_bytes(flags: int, xfrm: int) -> bytes:
    """The 16-byte ATTRIBUTES field: FLAGS then XFRM, each a little-endian u64."""
    _check_uint("attribute flags", flags, 64)
    _check_uint("xfrm", xfrm, 64)
    return flags.to_bytes(8, "little") + xfrm.to_bytes(8, "little")
