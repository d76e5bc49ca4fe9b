"""A fake of Gramine's ``/dev/attestation`` (libos/src/fs/dev/attestation.c) behind the
:class:`attestcall.linux.kernelfs.Files` interface.

The file set and sizes: ``attestation_type`` (RO, "none"/"dcap"/"epid", no newline),
``user_report_data`` (RW, 64 bytes: a shorter write is zero-padded, a longer one cut),
``target_info`` (RW, 512), ``my_target_info`` (RO, 512), ``report`` (RO, 432), ``quote``
(RO, present unless the type is "none"; a DCAP v3 quote over user_report_data). PAL
failures read as EACCES. Knobs: ``missing`` (file names that do not exist),
``short_write`` (user_report_data takes only that many bytes), ``quote_error`` (errno),
``quote_override`` (bytes returned as the quote).
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, field

from tests.fakes import blobs

ROOT = "/dev/attestation"
USER_REPORT_DATA_SIZE = 64
TARGET_INFO_SIZE = 512
REPORT_SIZE = 432
READ_WRITE = ("user_report_data", "target_info")
READ_ONLY = ("attestation_type", "my_target_info", "report", "quote")


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass
class FakeGramine:
    attestation_type: str = "dcap"
    root: str = ROOT
    present: bool = True
    missing: set[str] = field(default_factory=set)
    short_write: int | None = None
    quote_error: int | None = None
    quote_override: bytes | None = None
    quote_size: int = 4734
    user_report_data: bytes = bytes(USER_REPORT_DATA_SIZE)
    target_info: bytes = bytes(TARGET_INFO_SIZE)
    quotes: int = 0

    def names(self) -> set[str]:
        names = set(READ_WRITE + READ_ONLY) - self.missing
        if self.attestation_type == "none":
            names.discard("quote")
        return names

    def _name(self, path: str) -> str:
        parent, name = posixpath.split(path)
        if not self.present or parent != self.root or name not in self.names():
            raise _error(errno.ENOENT, path)
        return name

    # ------------------------------------------------------------------ Files

    def exists(self, path: str) -> bool:
        if path == self.root:
            return self.present
        try:
            self._name(path)
        except OSError:
            return False
        return True

    def writable(self, path: str) -> bool:
        return self.exists(path)

    def mkdir(self, path: str) -> None:
        raise _error(errno.EACCES, path)

    def rmdir(self, path: str) -> None:
        raise _error(errno.EACCES, path)

    def read(self, path: str) -> bytes:
        name = self._name(path)
        if name == "attestation_type":
            return self.attestation_type.encode()
        if name == "user_report_data":
            return self.user_report_data
        if name == "target_info":
            return self.target_info
        if name == "my_target_info":
            return bytes(TARGET_INFO_SIZE)
        if name == "report":
            return bytes(REPORT_SIZE)
        if self.quote_error is not None:
            raise _error(self.quote_error, path)
        self.quotes += 1
        if self.quote_override is not None:
            return self.quote_override
        return blobs.sgx_quote(self.user_report_data, self.quote_size)

    def write(self, path: str, data: bytes) -> int:
        name = self._name(path)
        if name in READ_ONLY:
            raise _error(errno.EACCES, path)
        taken = bytes(data) if self.short_write is None else bytes(data)[:self.short_write]
        size = USER_REPORT_DATA_SIZE if name == "user_report_data" else TARGET_INFO_SIZE
        value = taken[:size].ljust(size, b"\0")
        if name == "user_report_data":
            self.user_report_data = value
        else:
            self.target_info = value
        return len(taken)
