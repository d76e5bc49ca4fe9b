"""A fake of Linux's ``efi_secret`` securityfs directory behind the
:class:`attestcall.linux.kernelfs.Files` interface.

Built from a raw secret area the way the driver builds its files (independently of
``attestcall.amd.client.efi_secret.parse_table``): the header GUID must match and the table length
fit the area, each entry length must be at least 20 and fit what is left (otherwise the
driver creates no directory at all: ``present`` is False), null-GUID entries are skipped,
at most 64 files. Each file is named by the entry's lowercase GUID and reads as its data.
``unlink`` wipes an entry as the driver does. Knobs: ``read_error`` (errno for every read).
"""

from __future__ import annotations

import errno
import os
import posixpath
import struct
import uuid
from dataclasses import dataclass, field

ROOT = "/sys/kernel/security/secrets/coco"
HEADER_GUID = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
MAX_FILES = 64


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def table(entries: list[tuple[uuid.UUID, bytes]], area_size: int | None = None,
          length: int | None = None) -> bytes:
    """A raw area holding ``entries`` (``length`` overrides the header's length field)."""
    body = b"".join(g.bytes_le + struct.pack("<I", 20 + len(d)) + d for g, d in entries)
    size = 20 + len(body) if length is None else length
    raw = HEADER_GUID.bytes_le + struct.pack("<I", size) + body
    return raw if area_size is None else raw.ljust(area_size, b"\0")


@dataclass
class FakeEfiSecret:
    area: bytes
    root: str = ROOT
    read_error: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    present: bool = True

    def __post_init__(self) -> None:
        area = self.area
        self.present = False
        if len(area) < 20 or uuid.UUID(bytes_le=area[:16]) != HEADER_GUID:
            return
        (length,) = struct.unpack_from("<I", area, 16)
        if length < 20 or length > len(area):
            return
        at, left, files = 20, length - 20, {}
        while left >= 20 and len(files) < MAX_FILES:
            guid = uuid.UUID(bytes_le=area[at : at + 16])
            (size,) = struct.unpack_from("<I", area, at + 16)
            if size < 20 or size > left:
                return
            if guid.int:
                files[str(guid)] = area[at + 20 : at + size]
            at, left = at + size, left - size
        self.files, self.present = files, True

    def _name(self, path: str) -> str:
        parent, name = posixpath.split(path)
        if not self.present or parent != self.root or name not in self.files:
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
        return False  # files are 0440, the directory root-only

    def read(self, path: str) -> bytes:
        name = self._name(path)
        if self.read_error is not None:
            raise _error(self.read_error, path)
        return self.files[name]

    def write(self, path: str, data: bytes) -> int:
        self._name(path)
        raise _error(errno.EACCES, path)

    def mkdir(self, path: str) -> None:
        raise _error(errno.EPERM, path)

    def rmdir(self, path: str) -> None:
        raise _error(errno.EPERM, path)

    def unlink(self, name: str) -> None:
        """What ``rm`` on a secret file does: the entry is wiped and disappears."""
        del self.files[name]
