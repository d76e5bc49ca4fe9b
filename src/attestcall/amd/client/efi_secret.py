"""The SEV launch secret inside a guest: the EFI secret table and Linux's ``efi_secret``.

Under SEV and SEV-ES the guest owner injects a secret with LAUNCH_SECRET into an area the
guest firmware (OVMF) reserved and published. The secret is a GUIDed table (the format
Linux's ``drivers/virt/coco/efi_secret/efi_secret.c`` reads), little-endian, GUIDs in
EFI's mixed-endian layout (Python's ``UUID.bytes_le``)::

    0   16  header GUID 1e74f542-71dd-4d66-963e-ef4287ff173b
    16   4  length of the whole table, header included
    20  16  entry GUID (all zero: a deleted entry, skipped)
    36   4  entry length, its 20-byte header included
    40   x  entry data
    ...     further entries

The driver exposes each entry as a file named by its lowercase GUID under
``/sys/kernel/security/secrets/coco/`` (mode 0440; unlinking wipes it) and makes at most
64 files.

attestcall delivers the tenant's PKCS#8 private key in the entry with GUID
:data:`ATTESTCALL_KEY_GUID` (``9b7402bb-2e87-4c19-b60d-61492a157b30``, a random version-4
GUID chosen for attestcall). The simulated SEV keep uses the same table, so one tenant
serves both.

:func:`parse_table` and :func:`build_table` are pure; :class:`EfiSecretSource` reads the
driver's files through :class:`attestcall.linux.kernelfs.Files` (root path a parameter) and is an
EvidenceSource with technology 1.
"""

from __future__ import annotations

import errno
import os
import struct
import uuid
from collections.abc import Mapping

from attestcall.abi import PlatformFailure, Technology
from attestcall.errors import BackendUnavailable
from attestcall.linux.kernelfs import Files, OsFiles, describe_os_error
from attestcall.tees import OpenedKeep, Probe

TABLE_GUID = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
NULL_GUID = uuid.UUID(int=0)
ATTESTCALL_KEY_GUID = uuid.UUID("9b7402bb-2e87-4c19-b60d-61492a157b30")
DEFAULT_ROOT = "/sys/kernel/security/secrets/coco"
_HEADER = struct.Struct("<16sI")
HEADER_SIZE = _HEADER.size  # 20, the table header and every entry header
MAX_FILES = 64  # the driver's EFI_SECRET_NUM_FILES


class SecretTableError(ValueError):
    """The bytes are not a well-formed EFI secret table within its area."""


class SecretUnavailable(PlatformFailure):
    """The guest has no (readable) attestcall secret: -EIO to a payload."""


def build_table(entries: Mapping[uuid.UUID, bytes], align: int = 1) -> bytes:
    """A secret table holding ``entries`` in order, zero-padded to a multiple of ``align``
    (LAUNCH_SECRET wants 16); the header's length excludes the padding."""
    body = b"".join(_HEADER.pack(guid.bytes_le, HEADER_SIZE + len(data)) + bytes(data)
                    for guid, data in entries.items())
    if any(guid == NULL_GUID for guid in entries):
        raise SecretTableError("the null GUID marks deleted entries")
    length = HEADER_SIZE + len(body)
    if length > 0xFFFFFFFF:
        raise SecretTableError("a secret table is at most 4 GiB")
    table = _HEADER.pack(TABLE_GUID.bytes_le, length) + body
    return table + bytes(-len(table) % align)


def parse_table(area: bytes, limit: int = MAX_FILES) -> dict[uuid.UUID, bytes]:
    """The entries of the table at the start of ``area`` (the whole reserved area), with the
    driver's checks: the header GUID, a length within the area, each entry's length within
    what is left; deleted (null-GUID) entries skipped; at most ``limit`` entries kept."""
    area = bytes(area)
    if len(area) < HEADER_SIZE:
        raise SecretTableError("the area is smaller than a secret table header")
    guid, length = _HEADER.unpack_from(area, 0)
    if uuid.UUID(bytes_le=guid) != TABLE_GUID:
        raise SecretTableError("the area does not start with the secret table GUID")
    if length < HEADER_SIZE:
        raise SecretTableError(f"the table's length {length} is smaller than its header")
    if length > len(area):
        raise SecretTableError(f"the table's length {length} exceeds its {len(area)}-byte "
                               f"area")
    entries: dict[uuid.UUID, bytes] = {}
    at, left = HEADER_SIZE, length - HEADER_SIZE
    while left >= HEADER_SIZE and len(entries) < limit:
        guid, size = _HEADER.unpack_from(area, at)
        if size < HEADER_SIZE or size > left:
            raise SecretTableError(f"entry at offset {at} has length {size}, outside "
                                   f"{HEADER_SIZE}..{left}")
        key = uuid.UUID(bytes_le=guid)
        if key != NULL_GUID:
            if key in entries:
                raise SecretTableError(f"entry {key} appears twice")
            entries[key] = area[at + HEADER_SIZE : at + size]
        at += size
        left -= size
    return entries


class EfiSecretSource:
    """The tenant's key from ``efi_secret``: technology 1, evidence = the file's bytes (the
    nonce is ignored, as for any SEV pre-attestation source)."""

    technology = int(Technology.SEV)

    def __init__(self, root: str = DEFAULT_ROOT, guid: uuid.UUID = ATTESTCALL_KEY_GUID,
                 files: Files | None = None):
        self.root = root
        self.guid = guid
        self.files = files if files is not None else OsFiles()

    @property
    def path(self) -> str:
        return os.path.join(self.root, str(self.guid))

    def available(self) -> bool:
        return self.files.exists(self.path)

    def _read(self) -> bytes:
        try:
            data = self.files.read(self.path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise SecretUnavailable(f"{self.path}: no attestcall secret was injected "
                                        f"(or it was deleted)") from exc
            raise SecretUnavailable(f"{self.path}: {describe_os_error(exc)}") from exc
        if not data:
            raise SecretUnavailable(f"{self.path} is empty")
        return data

    def evidence_size(self) -> int:
        return len(self._read())

    def evidence(self, nonce: bytes) -> bytes:
        del nonce  # SEV pre-attestation: the nonce is ignored (docs/design.md section 1)
        return self._read()


# ------------------------------------------------------------- the efi-secret keep

NAME = "efi-secret"


def probe_efi_secret(root: str = DEFAULT_ROOT, files: Files | None = None) -> Probe:
    """efi_secret (SEV pre-attestation): the tenant's key was injected under attestcall's
    GUID."""
    source = EfiSecretSource(root, files=files)
    if not (files if files is not None else OsFiles()).exists(root):
        return Probe(NAME, root, False, "not present (not a SEV guest with a launch secret, "
                     "or the efi_secret driver is not loaded)")
    if not source.available():
        return Probe(NAME, root, False, f"no attestcall secret ({source.guid}) was injected")
    return Probe(NAME, root, True, "the tenant's key is there (SEV, technology 1)",
                 int(Technology.SEV))


def probe(options) -> Probe:
    """The probe with the paths in ``options`` (``attestcall devices``, ``--tee auto``)."""
    return probe_efi_secret(options.get("efi_secret_root") or DEFAULT_ROOT,
                            options.get("files"))


def open_efi_secret(payload: bytes, options, services: object) -> OpenedKeep:
    """The efi_secret keep. Options: ``efi_secret_root``, ``files``."""
    del payload, services
    root = options.get("efi_secret_root") or DEFAULT_ROOT
    result = probe_efi_secret(root, options.get("files"))
    if not result.usable:
        raise BackendUnavailable(f"--tee {NAME}: {result.path}: {result.detail}")
    return OpenedKeep(EfiSecretSource(root, files=options.get("files")),
                      {"path": root, "technology": int(Technology.SEV)})
