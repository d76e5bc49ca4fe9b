"""File operations on kernel pseudo-filesystems, behind a small interface.

configfs-tsm (:mod:`attestcall.linux.tsm`) and Gramine's ``/dev/attestation``
(:mod:`attestcall.intel.client.gramine`) are driven only through :class:`Files`, so tests plug in
fakes that implement the kernel's semantics. :class:`OsFiles` is the real thing.

Pseudo-files commit on close: a configfs binary attribute (``inblob``) and a Gramine
string file (``user_report_data``) are buffered while written and handed to the kernel
(or the LibOS) when the file is closed. :meth:`Files.write` is therefore one open, one
``write(2)`` and one close, and returns the count that single ``write(2)`` took; a caller
that gets fewer bytes than it gave must not try again on the same open file (it no longer
exists) but treat it as a failure.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

READ_LIMIT = 1 << 20  # no attestation blob comes near 1 MiB (configfs-tsm caps at 32 KiB)
_CHUNK = 1 << 16


class Files(Protocol):
    """The operations the backends need. Every method raises OSError as the kernel would."""

    def mkdir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes) -> int: ...

    def exists(self, path: str) -> bool: ...

    def writable(self, path: str) -> bool: ...


class OsFiles:
    """:class:`Files` over the real system calls."""

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def read(self, path: str) -> bytes:
        """The whole file, read until end of file (at most READ_LIMIT bytes)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    return b"".join(chunks)
                total += len(chunk)
                if total > READ_LIMIT:
                    raise OSError(errno.EFBIG, f"more than {READ_LIMIT} bytes", path)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> int:
        """One open, one write(2), one close; an error at close (where configfs commits a
        binary attribute on recent kernels) is raised like any other."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return written

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def writable(self, path: str) -> bool:
        return os.access(path, os.W_OK)


def describe_os_error(exc: OSError) -> str:
    """``strerror (ENAME)`` for a message, e.g. ``Device or resource busy (EBUSY)``."""
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "?"
    text = (exc.strerror or os.strerror(code)) if code is not None else str(exc)
    return f"{text} ({name})"
