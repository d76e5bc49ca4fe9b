"""SEV-SNP reports through the Linux guest driver's ``/dev/sev-guest`` ioctls.

The user ABI (include/uapi/linux/sev-guest.h), packed here with ctypes exactly as the
kernel lays it out on x86-64:

    struct snp_guest_request_ioctl {        32 bytes
        u8  msg_version;                    0   (must be non-zero)
        u64 req_data, resp_data;            8, 16 (user pointers)
        u64 exitinfo2;                      24  (bits 31:0 firmware error, 63:32 VMM error)
    };
    struct snp_report_req { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }            96 bytes
    struct snp_ext_report_req { snp_report_req data; u64 certs_address; u32 certs_len; }
                                                                                   112 bytes
    struct snp_report_resp { u8 data[4000]; }

    SNP_GET_REPORT      = _IOWR('S', 0, struct snp_guest_request_ioctl)  0xC0205300
    SNP_GET_DERIVED_KEY = _IOWR('S', 1, ...)                             0xC0205301
    SNP_GET_EXT_REPORT  = _IOWR('S', 2, ...)                             0xC0205302

``resp.data`` holds the firmware's MSG_REPORT_RSP: status u32, report_size u32, 24 reserved
bytes, then the 1184-byte ATTESTATION_REPORT.

What the driver does, and what this module does about it:

- SNP_GET_EXT_REPORT takes a certificate buffer whose length must be a multiple of the page
  size and at most SEV_FW_BLOB_MAX_SIZE (16 KiB), else EINVAL. When the host's certificates
  do not fit, the ioctl fails with EIO, VMM error SNP_GUEST_VMM_ERR_INVALID_LEN (1), and the
  needed length written back into ``certs_len``: the request is repeated with a buffer of
  that length (page-aligned), a bounded number of times. The length that worked is kept
  for the next report.
- An ioctl the driver does not know is ENOTTY; EINVAL means it refused the request's
  shape. On either, this module falls back to SNP_GET_REPORT (no certificate table) for
  good: the evidence keeps one size. (A driver whose VMPCK was disabled after a failed
  request answers ENOTTY to every request; the fallback then fails too, and says so.)
- Other failures carry the firmware and VMM error codes from ``exitinfo2``. The driver
  writes ``exitinfo2`` back only when it is non-zero; CPython's ``fcntl.ioctl`` copies a
  mutable argument of up to 1024 bytes back whether or not the call fails, so the codes
  are seen on failure too.

The certificate table is returned as configfs-tsm's ``auxblob`` gives it: cut after the
furthest certificate (the driver's buffer is page-padded with zeros), empty when the host
supplied none.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct
from collections.abc import Callable
from typing import Any

from attestcall.abi import NONCE_SIZE, PlatformFailure
from attestcall.amd.formats.report import REPORT_SIZE
from attestcall.errors import BackendUnavailable
from attestcall.linux.kernelfs import describe_os_error
from attestcall.tees import OpenedKeep, Probe

DEVICE = "/dev/sev-guest"
RESPONSE_SIZE = 4000
PAGE_SIZE = mmap.PAGESIZE
SEV_FW_BLOB_MAX_SIZE = 0x4000
MSG_VERSION = 1
DEFAULT_GROWTH_ATTEMPTS = 4

SNP_GUEST_VMM_ERR_INVALID_LEN = 1
SNP_GUEST_VMM_ERR_BUSY = 2

# SEV firmware status codes a report request can return (SEV-SNP ABI, status codes).
SEV_RET_INVALID_PARAM = 0x16
SEV_RET_INVALID_KEY = 0x27
_STATUS_NAMES = {SEV_RET_INVALID_PARAM: "INVALID_PARAM", SEV_RET_INVALID_KEY: "INVALID_KEY"}

RESPONSE_HEADER = struct.Struct("<II24s")
CERT_ENTRY = struct.Struct("<16sII")


class GuestRequestIoctl(ctypes.Structure):
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]

    @property
    def fw_error(self) -> int:
        return self.exitinfo2 & 0xFFFFFFFF

    @property
    def vmm_error(self) -> int:
        return self.exitinfo2 >> 32


class ReportRequest(ctypes.Structure):
    _fields_ = [
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    ]


class ExtReportRequest(ctypes.Structure):
    _fields_ = [
        ("data", ReportRequest),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    ]


class ReportResponse(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * RESPONSE_SIZE)]


assert ctypes.sizeof(GuestRequestIoctl) == 32
assert ctypes.sizeof(ReportRequest) == 96
assert ctypes.sizeof(ExtReportRequest) == 112
assert ctypes.sizeof(ReportResponse) == RESPONSE_SIZE


def _iowr(kind: str, number: int, size: int) -> int:
    """The Linux _IOWR(type, nr, size) request code (x86 encoding)."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | number


SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(GuestRequestIoctl))
SNP_GET_DERIVED_KEY = _iowr("S", 0x1, ctypes.sizeof(GuestRequestIoctl))
SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(GuestRequestIoctl))

# fcntl.ioctl's shape: (fd, request, mutable buffer, mutate_flag) -> int, OSError on failure.
Ioctl = Callable[[int, int, Any, bool], int]


class SevGuestError(PlatformFailure):
    """/dev/sev-guest did not produce a report. ``errno``, ``fw_error`` and ``vmm_error``
    are those of the failing ioctl, when there was one."""

    def __init__(self, message: str, code: int | None = None, fw_error: int | None = None,
                 vmm_error: int | None = None):
        super().__init__(message)
        self.errno = code
        self.fw_error = fw_error
        self.vmm_error = vmm_error


class _Unsupported(Exception):
    """SNP_GET_EXT_REPORT is refused as such (ENOTTY or EINVAL)."""


def _page_align(length: int) -> int:
    return -(-length // PAGE_SIZE) * PAGE_SIZE


def cert_table_extent(buffer: bytes) -> int:
    """The bytes of a page-padded certificate buffer that belong to the table: up to the
    end of the furthest certificate, or 0 for an empty table (as the driver sizes
    configfs-tsm's auxblob). A table without terminator or pointing past ``buffer`` is
    refused."""
    extent = 0
    offset = 0
    while True:
        if offset + CERT_ENTRY.size > len(buffer):
            raise SevGuestError("the host's certificate table has no terminating entry "
                                f"within {len(buffer)} bytes")
        guid, start, length = CERT_ENTRY.unpack_from(buffer, offset)
        offset += CERT_ENTRY.size
        if guid == bytes(16) and start == 0 and length == 0:
            break
        extent = max(extent, start + length)
    if extent > len(buffer):
        raise SevGuestError(f"the host's certificate table points past its {len(buffer)}-byte "
                            f"buffer (to {extent})")
    return extent


def parse_response(data: bytes) -> bytes:
    """The ATTESTATION_REPORT inside a MSG_REPORT_RSP, checked strictly: status 0,
    report_size 1184, reserved bytes zero."""
    data = bytes(data)
    if len(data) < RESPONSE_HEADER.size + REPORT_SIZE:
        raise SevGuestError(f"report response of {len(data)} bytes is too short")
    status, report_size, reserved = RESPONSE_HEADER.unpack_from(data)
    if status:
        name = _STATUS_NAMES.get(status, "")
        raise SevGuestError(f"the firmware answered status {status:#x} {name}".rstrip(),
                            fw_error=status)
    if report_size != REPORT_SIZE:
        raise SevGuestError(f"the firmware's report_size is {report_size}, "
                            f"expected {REPORT_SIZE}")
    if any(reserved):
        raise SevGuestError("the report response's reserved bytes are not zero")
    start = RESPONSE_HEADER.size
    return data[start:start + REPORT_SIZE]


class SevGuestDevice:
    """SNP reports from ``/dev/sev-guest``.

    ``vmpl`` is the VMPL the report is requested at. The device is opened read-write for
    each report; ``ioctl`` (default ``fcntl.ioctl``) is called on that descriptor, and
    tests substitute a fake driver for it.
    ``growth_attempts`` bounds the SNP_GET_EXT_REPORT requests made for one report."""

    def __init__(
        self,
        path: str = DEVICE,
        *,
        vmpl: int = 0,
        ioctl: Ioctl = fcntl.ioctl,
        msg_version: int = MSG_VERSION,
        growth_attempts: int = DEFAULT_GROWTH_ATTEMPTS,
        certs_len: int = PAGE_SIZE,
    ):
        if not 0 <= vmpl <= 3:
            raise ValueError(f"vmpl must be 0..3, not {vmpl}")
        if certs_len <= 0 or certs_len % PAGE_SIZE:
            raise ValueError("certs_len must be a positive multiple of the page size")
        self.path = path
        self.vmpl = vmpl
        self.ioctl = ioctl
        self.msg_version = msg_version
        self.growth_attempts = growth_attempts
        self.certs_len = certs_len
        self.extended = True
        self.fallback_reason: str | None = None

    def report(self, user_data: bytes) -> tuple[bytes, bytes]:
        """(the 1184-byte report, the certificate table) for the 64 bytes ``user_data``."""
        user_data = bytes(user_data)
        if len(user_data) != NONCE_SIZE:
            raise ValueError(f"user_data must be {NONCE_SIZE} bytes, not {len(user_data)}")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise SevGuestError(f"cannot open {self.path}: {describe_os_error(exc)}",
                                exc.errno) from exc
        try:
            if self.extended:
                try:
                    return self._ext_report(fd, user_data)
                except _Unsupported as exc:
                    self.extended = False
                    self.fallback_reason = str(exc)
            try:
                return self._report(fd, user_data), b""
            except SevGuestError as exc:
                if self.fallback_reason is not None:
                    exc.add_note(f"SNP_GET_EXT_REPORT was refused before: "
                                 f"{self.fallback_reason}")
                raise
        finally:
            os.close(fd)

    def evidence(self, user_data: bytes) -> bytes:
        """The report followed by the certificate table (technology 3's layout)."""
        report, table = self.report(user_data)
        return report + table

    # ------------------------------------------------------------------ requests

    def _request(self, user_data: bytes) -> ReportRequest:
        request = ReportRequest()
        ctypes.memmove(request.user_data, user_data, NONCE_SIZE)
        request.vmpl = self.vmpl
        return request

    def _call(self, fd: int, code: int, name: str, request: ctypes.Structure,
              response: ReportResponse) -> GuestRequestIoctl:
        io = GuestRequestIoctl(self.msg_version, ctypes.addressof(request),
                               ctypes.addressof(response), 0)
        try:
            self.ioctl(fd, code, io, True)
        except OSError as exc:
            raise _IoctlFailed(name, exc, io) from exc
        return io

    def _report(self, fd: int, user_data: bytes) -> bytes:
        request = self._request(user_data)
        response = ReportResponse()
        try:
            self._call(fd, SNP_GET_REPORT, "SNP_GET_REPORT", request, response)
        except _IoctlFailed as failed:
            raise failed.error() from failed.__cause__
        return parse_response(bytes(response.data))

    def _ext_report(self, fd: int, user_data: bytes) -> tuple[bytes, bytes]:
        length = self.certs_len
        for _ in range(self.growth_attempts):
            certs = (ctypes.c_uint8 * length)()
            request = ExtReportRequest(self._request(user_data), ctypes.addressof(certs),
                                       length)
            response = ReportResponse()
            try:
                self._call(fd, SNP_GET_EXT_REPORT, "SNP_GET_EXT_REPORT", request, response)
            except _IoctlFailed as failed:
                code = failed.exc.errno
                if code in (errno.ENOTTY, errno.EINVAL):
                    raise _Unsupported(failed.describe()) from failed.__cause__
                if code == errno.EIO and failed.vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN:
                    length = self._grown(length, request.certs_len)
                    continue
                raise failed.error() from failed.__cause__
            report = parse_response(bytes(response.data))
            table = bytes(certs)
            self.certs_len = length
            return report, table[:cert_table_extent(table)]
        raise SevGuestError(f"SNP_GET_EXT_REPORT: the host still wanted a larger certificate "
                            f"buffer after {self.growth_attempts} requests")

    def _grown(self, length: int, needed: int) -> int:
        if needed <= length:
            raise SevGuestError(f"SNP_GET_EXT_REPORT: the driver answered invalid length but "
                                f"asks for {needed} bytes, not more than the {length} given",
                                errno.EIO, vmm_error=SNP_GUEST_VMM_ERR_INVALID_LEN)
        grown = _page_align(needed)
        if grown > SEV_FW_BLOB_MAX_SIZE:
            raise SevGuestError(f"SNP_GET_EXT_REPORT: the host's certificates need {needed} "
                                f"bytes, more than the driver's {SEV_FW_BLOB_MAX_SIZE}",
                                errno.EIO, vmm_error=SNP_GUEST_VMM_ERR_INVALID_LEN)
        return grown


class _IoctlFailed(Exception):
    def __init__(self, name: str, exc: OSError, io: GuestRequestIoctl):
        super().__init__(name)
        self.name = name
        self.exc = exc
        self.fw_error = io.fw_error
        self.vmm_error = io.vmm_error

    def describe(self) -> str:
        return (f"{self.name} failed: {describe_os_error(self.exc)}, firmware error "
                f"{self.fw_error:#x}, VMM error {self.vmm_error:#x}")

    def error(self) -> SevGuestError:
        return SevGuestError(self.describe(), self.exc.errno, self.fw_error, self.vmm_error)


# -------------------------------------------------------------- the sev-guest keep

NAME = "sev-guest"
SNP_TECHNOLOGY = 3


class SevGuestSource:
    """/dev/sev-guest as an EvidenceSource: technology 3. Neither configfs-tsm nor the
    device has a size query: the size is learned from one real report (zero nonce) and
    cached; every report refreshes it."""

    technology = SNP_TECHNOLOGY

    def __init__(self, device: SevGuestDevice):
        self.device = device
        self._size: int | None = None

    def evidence_size(self) -> int:
        if self._size is None:
            self.evidence(bytes(NONCE_SIZE))
        assert self._size is not None
        return self._size

    def evidence(self, nonce: bytes) -> bytes:
        evidence = self.device.evidence(nonce)
        self._size = len(evidence)
        return evidence


def probe_sev_guest(path: str = DEVICE) -> Probe:
    """/dev/sev-guest: exists and opens read-write (no request is sent)."""
    if not os.path.exists(path):
        return Probe(NAME, path, False, "not present (not an SEV-SNP guest, or the "
                     "sev-guest driver is not loaded)")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Probe(NAME, path, False, f"cannot open: {describe_os_error(exc)}")
    os.close(fd)
    return Probe(NAME, path, True, "opens (SNP, technology 3)", SNP_TECHNOLOGY)


def probe(options) -> Probe:
    """The probe with the paths in ``options`` (``attestcall devices``, ``--tee auto``)."""
    return probe_sev_guest(options.get("sev_guest_path") or DEVICE)


def open_sev_guest(payload: bytes, options, services: object) -> OpenedKeep:
    """The /dev/sev-guest keep. Options: ``sev_guest_path``, ``ioctl`` (tests),
    ``privlevel`` (the VMPL). The payload is not measured."""
    del payload, services
    path = options.get("sev_guest_path") or DEVICE
    result = probe_sev_guest(path)
    if not result.usable:
        raise BackendUnavailable(f"--tee {NAME}: {result.path}: {result.detail}")
    kwargs: dict[str, Any] = {"vmpl": int(options.get("privlevel") or 0)}
    if options.get("ioctl") is not None:
        kwargs["ioctl"] = options["ioctl"]
    return OpenedKeep(SevGuestSource(SevGuestDevice(path, **kwargs)),
                      {"path": path, "technology": SNP_TECHNOLOGY})
