"""SGX quotes from inside Gramine, through its ``/dev/attestation`` pseudo-files.

Gramine (LibOS, Linux-SGX host) exposes, per its documentation and sources:

    attestation_type   (RO) "none", "dcap" (or "epid" on old releases): the manifest's
                       sgx.remote_attestation
    user_report_data   (RW) the 64-byte REPORTDATA for the next report or quote; shorter
                       writes are zero-padded, so a short write must be treated as failure
    target_info        (RW) 512-byte TARGETINFO for ``report``
    my_target_info     (RO) 512-byte TARGETINFO of this enclave
    report             (RO) 432-byte EREPORT targeted at ``target_info``
    quote              (RO) the quote for ``user_report_data`` from the quoting enclave
                       (absent when attestation_type is "none"; at most 8192 bytes)

Pseudo-files are committed on close; failures read as EACCES. The quote here is the DCAP
ECDSA quote (version 3, technology 2). The quote's size does not depend on the report data,
so the size is learned from one real quote with zero report data and cached.
"""

from __future__ import annotations

import errno
import os
import struct

from attestcall.abi import NONCE_SIZE, PlatformFailure, Technology
from attestcall.errors import BackendUnavailable
from attestcall.linux.kernelfs import Files, OsFiles, describe_os_error
from attestcall.tees import OpenedKeep, Probe

DEFAULT_ROOT = "/dev/attestation"
DCAP = "dcap"
QUOTE_MAX_SIZE = 8192
MIN_QUOTE_SIZE = 48 + 384 + 4  # header, report body, signature-data length
QUOTE_VERSION = 3
TECHNOLOGY = Technology.SGX

ATTESTATION_TYPE = "attestation_type"
USER_REPORT_DATA = "user_report_data"
QUOTE = "quote"


class GramineError(PlatformFailure):
    """Gramine's /dev/attestation did not produce a quote."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


_HINTS = {
    errno.ENOENT: "not running inside Gramine with SGX (or this file is not offered)",
    errno.EACCES: "Gramine refused (it reports every PAL attestation failure this way)",
}


class GramineClient:
    """Quotes through ``/dev/attestation`` (``root``); ``files`` defaults to the real
    filesystem."""

    def __init__(self, root: str = DEFAULT_ROOT, *, files: Files | None = None):
        self.root = root
        self.files: Files = files if files is not None else OsFiles()
        self._size: int | None = None

    def attestation_type(self) -> str:
        raw = self._read(ATTESTATION_TYPE)
        return raw.decode("ascii", "replace").strip("\0\n ")

    def quote(self, user_report_data: bytes) -> bytes:
        """A DCAP quote over the 64 bytes ``user_report_data``."""
        data = bytes(user_report_data)
        if len(data) != NONCE_SIZE:
            raise ValueError(f"user_report_data must be {NONCE_SIZE} bytes, not {len(data)}")
        kind = self.attestation_type()
        if kind != DCAP:
            raise GramineError(f"Gramine: attestation type is {kind!r}, not 'dcap' (set "
                               "sgx.remote_attestation = \"dcap\" in the manifest)")
        path = self._path(USER_REPORT_DATA)
        try:
            written = self.files.write(path, data)
        except OSError as exc:
            raise self._failure("cannot write", path, exc) from exc
        if written != len(data):
            raise GramineError(f"Gramine: short write to {path}: {written} of {len(data)} "
                               "bytes (Gramine would zero-pad the rest)")
        quote = self._read(QUOTE)
        if len(quote) < MIN_QUOTE_SIZE:
            raise GramineError(f"Gramine: the quote is {len(quote)} bytes, too short for a "
                               "DCAP quote")
        (version,) = struct.unpack_from("<H", quote)
        if version != QUOTE_VERSION:
            raise GramineError(f"Gramine: quote version {version}, expected {QUOTE_VERSION} "
                               "(DCAP ECDSA)")
        self._size = len(quote)
        return quote

    def quote_size(self) -> int:
        """The size of a quote: from one real quote (zero report data), then cached; every
        quote refreshes it."""
        if self._size is None:
            self.quote(bytes(NONCE_SIZE))
        assert self._size is not None
        return self._size

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _read(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return self.files.read(path)
        except OSError as exc:
            raise self._failure("cannot read", path, exc) from exc

    @staticmethod
    def _failure(step: str, path: str, exc: OSError) -> GramineError:
        message = f"Gramine: {step} {path}: {describe_os_error(exc)}"
        hint = _HINTS.get(exc.errno or 0)
        if hint:
            message += f": {hint}"
        return GramineError(message, exc.errno)


# ---------------------------------------------------------------- the gramine keep

NAME = "gramine"


class GramineSource:
    """Gramine's /dev/attestation as an EvidenceSource: technology 2 (a DCAP quote)."""

    technology = int(Technology.SGX)

    def __init__(self, client: GramineClient):
        self.client = client

    def evidence_size(self) -> int:
        return self.client.quote_size()

    def evidence(self, nonce: bytes) -> bytes:
        return self.client.quote(nonce)


def probe_gramine(root: str = DEFAULT_ROOT, files: Files | None = None) -> Probe:
    """Gramine: /dev/attestation exists and its attestation type is dcap."""
    files = files if files is not None else OsFiles()
    if not files.exists(root):
        return Probe(NAME, root, False, "not present (not inside Gramine with SGX)")
    client = GramineClient(root, files=files)
    try:
        kind = client.attestation_type()
    except GramineError as exc:
        return Probe(NAME, root, False, str(exc))
    if kind != DCAP:
        why = ("EPID is not supported: technology 2 is a DCAP quote" if kind == "epid"
               else "set sgx.remote_attestation = \"dcap\" in the manifest")
        return Probe(NAME, root, False, f"attestation type {kind!r}: {why}")
    if not files.exists(os.path.join(root, QUOTE)):
        return Probe(NAME, root, False, "attestation type dcap but no quote file")
    return Probe(NAME, root, True, "attestation type dcap (SGX, technology 2)",
                 int(Technology.SGX))


def probe(options) -> Probe:
    """The probe with the paths in ``options`` (``attestcall devices``, ``--tee auto``)."""
    return probe_gramine(options.get("gramine_root") or DEFAULT_ROOT, options.get("files"))


def open_gramine(payload: bytes, options, services: object) -> OpenedKeep:
    """The Gramine keep. Options: ``gramine_root``, ``files``. The payload is not measured:
    the quote covers the enclave Gramine launched."""
    del payload, services
    root = options.get("gramine_root") or DEFAULT_ROOT
    result = probe_gramine(root, options.get("files"))
    if not result.usable:
        raise BackendUnavailable(f"--tee {NAME}: {result.path}: {result.detail}")
    return OpenedKeep(GramineSource(GramineClient(root, files=options.get("files"))),
                      {"path": root, "technology": int(Technology.SGX)})
