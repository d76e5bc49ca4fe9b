"""An on-disk cache of fetched collateral, each entry keyed by URL and kept until it expires.

The directory is ``$ATTESTCALL_CACHE``, else ``$XDG_CACHE_HOME/attestcall``, else
``~/.cache/attestcall``; it is created with mode 0700 on the first write. Each entry is one
file named after the SHA-256 of its key, holding JSON: the key, the expiry (ISO 8601, UTC),
the SHA-256 of the data and the data (base64). Writes go to a temporary file in the same
directory, then are renamed over the entry, so a reader sees the old entry or the new one,
never half of one. An entry that cannot be read, does not parse, belongs to another key or
whose digest does not match is treated as absent (and refetched by the caller); an entry
past its expiry likewise.

Expiries are what the data says about itself: the ``nextUpdate`` of Intel's TCB info, QE
identity and CRLs (the earliest of them), the ``notAfter`` of AMD certificates.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_FORMAT = 1


def default_directory() -> Path:
    """$ATTESTCALL_CACHE, else $XDG_CACHE_HOME/attestcall, else ~/.cache/attestcall."""
    explicit = os.environ.get("ATTESTCALL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "attestcall"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Cache:
    """Entries keyed by URL (any string), each stored with the instant it expires.

    ``clock`` gives "now" (timezone-aware); tests inject one instead of sleeping."""

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        self.clock = clock

    def path(self, key: str) -> Path:
        """The file holding the entry for ``key``."""
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def get(self, key: str) -> bytes | None:
        """The data stored for ``key``, or None if absent, expired or unreadable."""
        try:
            entry = json.loads(self.path(key).read_bytes())
            if not isinstance(entry, dict) or entry.get("format") != _FORMAT:
                return None
            if entry.get("key") != key:
                return None
            expires = dt.datetime.fromisoformat(entry["expires"])
            data = base64.b64decode(entry["data"], validate=True)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            return None
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            return None
        if expires.tzinfo is None or expires <= self.clock():
            return None
        return data

    def put(self, key: str, data: bytes, expires: dt.datetime) -> None:
        """Store ``data`` for ``key`` until ``expires`` (timezone-aware). Data already expired
        is not stored. A cache that cannot be written is skipped silently: caching is an
        optimisation, never a reason to fail a verification."""
        if expires.tzinfo is None:
            raise ValueError("cache expiry must be timezone-aware")
        if expires <= self.clock():
            return
        entry = {
            "format": _FORMAT,
            "key": key,
            "expires": expires.astimezone(dt.UTC).isoformat(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "data": base64.b64encode(data).decode(),
        }
        try:
            self._write(self.path(key), json.dumps(entry).encode())
        except OSError:
            return

    def _write(self, target: Path, content: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
