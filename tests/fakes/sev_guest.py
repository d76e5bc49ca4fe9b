"""A fake of the Linux sev-guest driver's ioctl interface (drivers/virt/coco/sev-guest).

It stands in for ``fcntl.ioctl(fd, request, arg, mutate)`` and behaves as the kernel does
towards user memory: it reads ``struct snp_guest_request_ioctl`` from ``arg`` and the
request structures from the user pointers inside it (with ctypes, at those addresses),
writes the 4000-byte response, the certificate buffer and the updated ``certs_len`` where
the kernel would, and writes ``exitinfo2`` back only when it is non-zero (as the driver's
``copy_to_user`` does). The layouts are spelled here with ``struct``, independently of the
production ctypes classes, so a packing mistake there shows up as a failure.

Driver behaviour kept: msg_version 0 or NULL pointers are EINVAL; an unknown request is
ENOTTY (exitinfo2 0xff, "no firmware call"); a certificate length that is not a page
multiple or exceeds 16 KiB is EINVAL; a buffer too small for the host's certificates is
EIO with VMM error 1 (SNP_GUEST_VMM_ERR_INVALID_LEN) and the needed length (page-aligned)
written into ``certs_len``; firmware and VMM errors are EIO with ``exitinfo2`` set.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import blobs

PAGE = 4096
BLOB_MAX = 0x4000
IOCTL = struct.Struct("<B7xQQQ")  # msg_version, pad, req_data, resp_data, exitinfo2
REPORT_REQ = struct.Struct("<64sI28s")
EXT_REPORT_REQ = struct.Struct("<64sI28sQI4x")
CERTS_LEN_OFFSET = 104
RESPONSE_SIZE = 4000
NO_FW_CALL = 0xFF


def _iowr(number: int) -> int:
    return 0xC0000000 | (IOCTL.size << 16) | (ord("S") << 8) | number


GET_REPORT = _iowr(0)
GET_DERIVED_KEY = _iowr(1)
GET_EXT_REPORT = _iowr(2)


def _align(length: int) -> int:
    return -(-length // PAGE) * PAGE


@dataclass
class FakeSevGuest:
    """The driver plus a host and firmware behind it.

    ``certs``: the host's certificate table (b"" for none). ``ext_supported``: False makes
    SNP_GET_EXT_REPORT unknown (ENOTTY). ``ext_einval``: the driver refuses it with EINVAL.
    ``vmpck_disabled``: every request is ENOTTY. ``fw_error`` / ``vmm_error``: the next
    requests fail with EIO and these codes. ``status`` / ``report_size`` / ``reserved`` /
    ``response``: what the firmware puts in MSG_REPORT_RSP (``response`` replaces it whole).
    ``certs_override``: bytes written into the certificate buffer instead of the table.
    ``lie_certs_len``: the needed length reported on VMM error 1 instead of the true one."""

    certs: bytes = field(default_factory=blobs.cert_table)
    ext_supported: bool = True
    ext_einval: bool = False
    vmpck_disabled: bool = False
    fw_error: int = 0
    vmm_error: int = 0
    status: int = 0
    report_size: int = 1184
    reserved: bytes = bytes(24)
    response: bytes | None = None
    certs_override: bytes | None = None
    lie_certs_len: int | None = None
    calls: list[tuple[int, int]] = field(default_factory=list)  # (request, certs_len)
    vmpls: list[int] = field(default_factory=list)

    def ioctl(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        view = memoryview(arg).cast("B")
        if len(view) != IOCTL.size:
            raise AssertionError(f"ioctl argument is {len(view)} bytes, not {IOCTL.size}")
        msg_version, req_data, resp_data, _ = IOCTL.unpack(bytes(view))
        exitinfo2, code = self._handle(request, msg_version, req_data, resp_data)
        if exitinfo2 and mutate:  # the driver copies back only a non-zero exitinfo2
            view[24:32] = struct.pack("<Q", exitinfo2)
        if code:
            raise OSError(code, os.strerror(code))
        return 0

    # ------------------------------------------------------------------ the driver

    def _handle(self, request: int, msg_version: int, req: int, resp: int) -> tuple[int, int]:
        if not msg_version:
            return NO_FW_CALL, errno.EINVAL
        if request not in (GET_REPORT, GET_DERIVED_KEY, GET_EXT_REPORT):
            return NO_FW_CALL, errno.ENOTTY
        if request == GET_EXT_REPORT and not self.ext_supported:
            return NO_FW_CALL, errno.ENOTTY
        if request == GET_DERIVED_KEY:
            return NO_FW_CALL, errno.ENOTTY  # not faked
        if not req or not resp:
            return NO_FW_CALL, errno.EINVAL
        if self.vmpck_disabled:
            return NO_FW_CALL, errno.ENOTTY
        if request == GET_REPORT:
            user_data, vmpl, _ = REPORT_REQ.unpack(ctypes.string_at(req, REPORT_REQ.size))
            self.calls.append((request, 0))
            return self._firmware(user_data, vmpl, resp)
        user_data, vmpl, _, certs_address, certs_len = EXT_REPORT_REQ.unpack(
            ctypes.string_at(req, EXT_REPORT_REQ.size))
        self.calls.append((request, certs_len))
        if self.ext_einval:
            return NO_FW_CALL, errno.EINVAL
        wants_certs = bool(certs_len and certs_address)
        if wants_certs and (certs_len > BLOB_MAX or certs_len % PAGE):
            return NO_FW_CALL, errno.EINVAL
        table = self.certs if self.certs_override is None else self.certs_override
        if wants_certs and len(table) > certs_len:
            needed = self.lie_certs_len if self.lie_certs_len is not None else _align(len(table))
            ctypes.memmove(req + CERTS_LEN_OFFSET, struct.pack("<I", needed), 4)
            return 1 << 32, errno.EIO
        result = self._firmware(user_data, vmpl, resp)
        if result[1] == 0 and wants_certs:
            ctypes.memmove(certs_address, table.ljust(certs_len, b"\0"), certs_len)
        return result

    def _firmware(self, user_data: bytes, vmpl: int, resp: int) -> tuple[int, int]:
        if self.fw_error or self.vmm_error:
            return (self.vmm_error << 32) | self.fw_error, errno.EIO
        self.vmpls.append(vmpl)
        if self.response is not None:
            body = self.response
        else:
            header = struct.pack("<II", self.status, self.report_size) + self.reserved
            body = header + blobs.snp_report(user_data, vmpl)
        ctypes.memmove(resp, body.ljust(RESPONSE_SIZE, b"\0")[:RESPONSE_SIZE], RESPONSE_SIZE)
        return 0, 0
