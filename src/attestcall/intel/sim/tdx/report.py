"""TDREPORT_STRUCT, the 1024 bytes TDG.MR.REPORT writes, and its MAC.

Layout (offsets in bytes, integers little-endian)::

    0    REPORTMACSTRUCT (256)
           0   REPORTTYPE      4   TYPE 0x81 (TDX), SUBTYPE 0, VERSION, reserved 0
           4   reserved        12
           16  CPUSVN          16
           32  TEE_TCB_INFO_HASH 48  SHA-384 of the 239-byte TEE_TCB_INFO
           80  TEE_INFO_HASH   48  SHA-384 of the 512-byte TDINFO
           128 REPORTDATA      64  the caller's 64 bytes (the nonce)
           192 reserved        32
           224 MAC             32  over bytes 0..224 of REPORTMACSTRUCT
    256  TEE_TCB_INFO (239)
           0   VALID           8   bit i set: the 8 bytes at offset 8*i are valid
           8   TEE_TCB_SVN     16  [0] module SVN, [1] module major version, [2] SEAM loader
           24  MRSEAM          48
           72  MRSIGNERSEAM    48
           120 ATTRIBUTES      8   SEAM attributes
           128 TEE_TCB_SVN2    16  TDX 1.5
           144 reserved        95
    495  reserved (17)
    512  TDINFO (512)
           0   ATTRIBUTES      8   TD attributes (bit 0 DEBUG)
           8   XFAM            8
           16  MRTD            48
           64  MRCONFIGID      48
           112 MROWNER         48
           160 MROWNERCONFIG   48
           208 RTMR0..RTMR3    4 x 48
           400 SERVTD_HASH     48  TDX 1.5 (REPORTTYPE.VERSION 1)
           448 reserved        64

The MAC (simulated; the real one is checked by the TD quoting enclave with the CPU's
EVERIFYREPORT2): HMAC-SHA-256 over bytes 0..224 (REPORTTYPE through the second reserved
field) under a 32-byte key = HKDF-SHA256(no salt, input keying material the simulated CPU
secret (the SGX simulator's ``cpu_secret``: the same CPU), info ``b"attestcall-sim TDX
REPORTMAC key v1"`` || CPUSVN). The two hashes bind TEE_TCB_INFO and TDINFO to the MAC.
"""

from __future__ import annotations

import functools
import hashlib
import hmac as std_hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestcall.abi import NONCE_SIZE
from attestcall.errors import AttestcallError
from attestcall.intel.formats.tdx_quote import TdReportBody

TDREPORT_SIZE = 1024
REPORT_MAC_SIZE = 256
TEE_TCB_INFO_SIZE = 239
TDINFO_SIZE = 512
MAC_OFFSET = 224
REPORT_DATA_OFFSET = 128
TEE_TCB_INFO_OFFSET = 256
TDINFO_OFFSET = 512
REPORT_TYPE_TDX = 0x81
REPORT_VERSION_TD15 = 1  # TDINFO.SERVTD_HASH is populated
MEASUREMENT_SIZE = 48
REPORT_DATA_SIZE = NONCE_SIZE  # the nonce goes verbatim into REPORTDATA
# VALID: TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, ATTRIBUTES, TEE_TCB_SVN2 (bytes 8..144).
TEE_TCB_INFO_VALID = sum(1 << i for i in range(1, 18))

_MAC_KEY_LABEL = b"attestcall-sim TDX REPORTMAC key v1"
_TEE_TCB_INFO = struct.Struct("<Q16s48s48s8s16s95x")
_TDINFO = struct.Struct("<QQ48s48s48s48s48s48s48s48s48s64x")


class TdReportError(AttestcallError, ValueError):
    """Bytes that are not a TDREPORT, or a TDREPORT whose MAC or hashes do not verify."""


@functools.lru_cache(maxsize=16)
def report_mac_key(cpu_secret: bytes, cpu_svn: bytes) -> bytes:
    """The simulated REPORTMAC key of this CPU at this CPUSVN (see the module docstring)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_KEY_LABEL + cpu_svn)
    return hkdf.derive(cpu_secret)


def report_mac(key: bytes, mac_input: bytes) -> bytes:
    """HMAC-SHA-256 of the first 224 bytes of REPORTMACSTRUCT."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(mac_input)
    return mac.finalize()


def _need(value: bytes, size: int, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise TdReportError(f"{what} must be {size} bytes")


@dataclass(frozen=True)
class TeeTcbInfo:
    """TEE_TCB_INFO: what the TDX module says about itself."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    attributes: bytes
    tee_tcb_svn2: bytes
    valid: int = TEE_TCB_INFO_VALID

    def __post_init__(self) -> None:
        for name, size in (("tee_tcb_svn", 16), ("mr_seam", 48), ("mr_signer_seam", 48),
                           ("attributes", 8), ("tee_tcb_svn2", 16)):  # fmt: skip
            _need(getattr(self, name), size, name)

    def pack(self) -> bytes:
        return _TEE_TCB_INFO.pack(self.valid, self.tee_tcb_svn, self.mr_seam,
                                  self.mr_signer_seam, self.attributes, self.tee_tcb_svn2)

    @classmethod
    def unpack(cls, data: bytes) -> TeeTcbInfo:
        if len(data) != TEE_TCB_INFO_SIZE:
            raise TdReportError(f"TEE_TCB_INFO must be {TEE_TCB_INFO_SIZE} bytes")
        valid, *fields = _TEE_TCB_INFO.unpack(bytes(data))
        return cls(*fields, valid=valid)


@dataclass(frozen=True)
class TdInfo:
    """TDINFO: what the TDX module measured of the TD."""

    attributes: int
    xfam: int
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    servtd_hash: bytes = bytes(MEASUREMENT_SIZE)

    def __post_init__(self) -> None:
        for name in ("mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "servtd_hash"):
            _need(getattr(self, name), MEASUREMENT_SIZE, name)
        if len(self.rtmrs) != 4:
            raise TdReportError("TDINFO holds four RTMRs")
        for index, rtmr in enumerate(self.rtmrs):
            _need(rtmr, MEASUREMENT_SIZE, f"rtmr{index}")
        for name in ("attributes", "xfam"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << 64:
                raise TdReportError(f"{name} must be a 64-bit unsigned integer")

    def pack(self) -> bytes:
        return _TDINFO.pack(self.attributes, self.xfam, self.mr_td, self.mr_config_id,
                            self.mr_owner, self.mr_owner_config, *self.rtmrs, self.servtd_hash)

    @classmethod
    def unpack(cls, data: bytes) -> TdInfo:
        if len(data) != TDINFO_SIZE:
            raise TdReportError(f"TDINFO must be {TDINFO_SIZE} bytes")
        fields = _TDINFO.unpack(bytes(data))
        return cls(*fields[:6], tuple(fields[6:10]), fields[10])  # type: ignore[arg-type]


@dataclass(frozen=True)
class TdReport:
    """A parsed TDREPORT_STRUCT (the bytes are kept: the MAC is over them exactly)."""

    raw: bytes
    report_type: bytes
    cpu_svn: bytes
    tee_tcb_info_hash: bytes
    tee_info_hash: bytes
    report_data: bytes
    mac: bytes
    tee_tcb_info: TeeTcbInfo
    td_info: TdInfo

    @classmethod
    def unpack(cls, data: bytes) -> TdReport:
        """Parse; TdReportError for the wrong size or type, or a reserved field outside the
        hashed structures that is not zero (the MAC is not checked here)."""
        data = bytes(data)
        if len(data) != TDREPORT_SIZE:
            raise TdReportError(f"a TDREPORT is {TDREPORT_SIZE} bytes, got {len(data)}")
        report_type = data[0:4]
        if report_type[0] != REPORT_TYPE_TDX or report_type[1] != 0 or report_type[3] != 0:
            raise TdReportError(f"REPORTTYPE {report_type.hex()} is not a TDX report")
        if any(data[4:16]) or any(data[192:224]) or any(data[495:512]):
            raise TdReportError("a reserved field of the TDREPORT is not zero")
        return cls(
            raw=data,
            report_type=report_type,
            cpu_svn=data[16:32],
            tee_tcb_info_hash=data[32:80],
            tee_info_hash=data[80:128],
            report_data=data[128:192],
            mac=data[MAC_OFFSET:REPORT_MAC_SIZE],
            tee_tcb_info=TeeTcbInfo.unpack(data[256:495]),
            td_info=TdInfo.unpack(data[TDINFO_OFFSET:]),
        )

    def check(self, cpu_secret: bytes) -> None:
        """TdReportError unless the MAC verifies under this CPU's key and both hashes bind
        the TEE_TCB_INFO and TDINFO the report carries (what the TD QE checks)."""
        _check_mac_and_hashes(self.raw, cpu_secret)

    def quote_body(self, td15: bool) -> TdReportBody:
        """The TD report body a quote carries: TD 1.0 (584 bytes) or TD 1.5 (648)."""
        tcb, td = self.tee_tcb_info, self.td_info
        return TdReportBody(
            tee_tcb_svn=tcb.tee_tcb_svn,
            mr_seam=tcb.mr_seam,
            mr_signer_seam=tcb.mr_signer_seam,
            seam_attributes=tcb.attributes,
            td_attributes=td.attributes.to_bytes(8, "little"),
            xfam=td.xfam.to_bytes(8, "little"),
            mr_td=td.mr_td,
            mr_config_id=td.mr_config_id,
            mr_owner=td.mr_owner,
            mr_owner_config=td.mr_owner_config,
            rtmr0=td.rtmrs[0],
            rtmr1=td.rtmrs[1],
            rtmr2=td.rtmrs[2],
            rtmr3=td.rtmrs[3],
            report_data=self.report_data,
            tee_tcb_svn2=tcb.tee_tcb_svn2 if td15 else None,
            mr_service_td=td.servtd_hash if td15 else None,
        )


# Where each TD report body field lies in a TDREPORT, in the body's order (TD 1.0, then the
# two TD 1.5 fields).
_TD10_SPANS = ((264, 280), (280, 328), (328, 376), (376, 384), (512, 520), (520, 528),
               (528, 912), (128, 192))  # fmt: skip
_TD15_SPANS = ((384, 400), (912, 960))


def quote_body_bytes(tdreport: bytes, td15: bool) -> bytes:
    """The packed TD report body (584 or 648 bytes) a quote of ``tdreport`` carries: the same
    bytes as ``TdReport.unpack(tdreport).quote_body(td15).pack()``, sliced directly. The
    caller has checked ``tdreport`` is 1024 bytes."""
    spans = _TD10_SPANS + _TD15_SPANS if td15 else _TD10_SPANS
    return b"".join([tdreport[start:end] for start, end in spans])


def check_report(tdreport: bytes, cpu_secret: bytes) -> None:
    """TdReportError unless ``tdreport`` is a well-formed TDREPORT whose MAC verifies under
    this CPU's key and whose hashes bind its TEE_TCB_INFO and TDINFO: what
    ``TdReport.unpack(tdreport).check(cpu_secret)`` checks, without building the parts."""
    if len(tdreport) != TDREPORT_SIZE:
        raise TdReportError(f"a TDREPORT is {TDREPORT_SIZE} bytes, got {len(tdreport)}")
    unusual = tdreport[0:2] != bytes((REPORT_TYPE_TDX, 0)) or tdreport[3] != 0
    if unusual or any(tdreport[4:16]) or any(tdreport[192:224]) or any(tdreport[495:512]):
        TdReport.unpack(tdreport)  # raises, naming the problem
    _check_mac_and_hashes(tdreport, cpu_secret)


def _check_mac_and_hashes(tdreport: bytes, cpu_secret: bytes) -> None:
    key = report_mac_key(cpu_secret, tdreport[16:32])
    if not std_hmac.compare_digest(report_mac(key, tdreport[:MAC_OFFSET]), tdreport[224:256]):
        raise TdReportError("TDREPORT MAC does not verify on this platform")
    if hashlib.sha384(tdreport[256:495]).digest() != tdreport[32:80]:
        raise TdReportError("TEE_TCB_INFO does not match TEE_TCB_INFO_HASH")
    if hashlib.sha384(tdreport[TDINFO_OFFSET:]).digest() != tdreport[80:128]:
        raise TdReportError("TDINFO does not match TEE_INFO_HASH")


def build_report(
    *, cpu_secret: bytes, cpu_svn: bytes, tee_tcb_info: bytes, td_info: bytes, report_data: bytes,
    tee_tcb_info_hash: bytes | None = None, td_info_hash: bytes | None = None,
) -> bytes:  # fmt: skip
    """Assemble and MAC a TDREPORT from packed TEE_TCB_INFO and TDINFO (hashes may be passed
    precomputed)."""
    if len(report_data) != REPORT_DATA_SIZE:
        raise TdReportError(f"REPORTDATA must be {REPORT_DATA_SIZE} bytes, got {len(report_data)}")
    if len(cpu_svn) != 16 or len(tee_tcb_info) != TEE_TCB_INFO_SIZE or len(td_info) != TDINFO_SIZE:
        raise TdReportError("CPUSVN, TEE_TCB_INFO or TDINFO has the wrong size")
    if tee_tcb_info_hash is None:
        tee_tcb_info_hash = hashlib.sha384(tee_tcb_info).digest()
    if td_info_hash is None:
        td_info_hash = hashlib.sha384(td_info).digest()
    mac_input = b"".join((
        bytes((REPORT_TYPE_TDX, 0, REPORT_VERSION_TD15, 0)), bytes(12), cpu_svn,
        tee_tcb_info_hash, td_info_hash, bytes(report_data), bytes(32),
    ))  # fmt: skip
    mac = report_mac(report_mac_key(cpu_secret, cpu_svn), mac_input)
    return mac_input + mac + tee_tcb_info + bytes(17) + td_info
