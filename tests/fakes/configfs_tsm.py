"""A fake of configfs-tsm (drivers/virt/coco/tsm.c with the sev-guest, tdx-guest or
arm-cca-guest provider) behind the :class:`attestcall.linux.kernelfs.Files` interface.

Semantics kept from the kernel:
- mkdir under the report root makes an instance; ENXIO while no provider is registered;
- the attribute set depends on the provider (tdx_guest has no privlevel, privlevel_floor
  or auxblob; arm_cca_guest hides none, as it has no visibility callback: the service_*
  attributes and manifestblob too, which it ignores);
- arm_cca_guest takes an inblob of 32 to 64 bytes (EINVAL otherwise, when the report is
  generated), zero-padded to the 64-byte realm challenge; its outblob is the CCA token,
  its auxblob and manifestblob are empty, and privlevel (0..3) is accepted and ignored;
- ``generation`` counts inblob and privlevel writes; a write-only attribute opened for
  reading is EACCES, a read-only one opened for writing too;
- inblob takes at most 64 bytes (EFBIG beyond); the provider refuses any other length than
  64 when the report is generated (EINVAL); reading outblob before any inblob is EINVAL;
- privlevel outside privlevel_floor..3 is EINVAL;
- outblob/auxblob are generated on the first read after a write and cached until the next;
- reading outblob after the provider went away is ENOTTY.

Knobs for error paths: ``busy`` (inblob writes fail EBUSY), ``drop_writes`` (the write
"succeeds" but is not committed, as older kernels ignore the commit error at close),
``concurrent_writes`` (that many outblob reads are followed by another process's inblob
write to the same instance), ``report_error`` (an errno report generation fails with),
``short_write`` (inblob writes take only that many bytes), ``rmdir_error``.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, field

from tests.fakes import blobs

ROOT = "/sys/kernel/config/tsm/report"

SEV_ATTRS = ("provider", "generation", "privlevel", "privlevel_floor", "inblob", "outblob",
             "auxblob")
TDX_ATTRS = ("provider", "generation", "inblob", "outblob")
CCA_ATTRS = ("provider", "generation", "privlevel", "privlevel_floor", "service_provider",
             "service_guid", "service_manifest_version", "inblob", "outblob", "auxblob",
             "manifestblob")
WRITE_ONLY = ("inblob", "privlevel", "service_provider", "service_guid",
              "service_manifest_version")
READ_ONLY = ("provider", "generation", "privlevel_floor", "outblob", "auxblob", "manifestblob")


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass
class Instance:
    provider: str
    inblob: bytes = b""
    privlevel: int = 0
    write_generation: int = 0
    read_generation: int = 0
    outblob: bytes | None = None
    auxblob: bytes = b""

    @property
    def attrs(self) -> tuple[str, ...]:
        return {"sev_guest": SEV_ATTRS, "arm_cca_guest": CCA_ATTRS}.get(self.provider,
                                                                        TDX_ATTRS)


@dataclass
class FakeTsm:
    """configfs-tsm under ``root`` with ``provider`` registered (None: no provider)."""

    provider: str | None = "sev_guest"
    root: str = ROOT
    privlevel_floor: int = 0
    certs: bytes = field(default_factory=blobs.cert_table)
    present: bool = True
    root_writable: bool = True
    busy: bool = False
    drop_writes: bool = False
    concurrent_writes: int = 0
    report_error: int | None = None
    short_write: int | None = None
    rmdir_error: int | None = None
    instances: dict[str, Instance] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reports: int = 0

    # ------------------------------------------------------------------ Files

    def mkdir(self, path: str) -> None:
        parent, name = posixpath.split(path)
        if not self.present or parent != self.root:
            raise _error(errno.ENOENT, path)
        if not self.root_writable:
            raise _error(errno.EACCES, path)
        if name in self.instances:
            raise _error(errno.EEXIST, path)
        if self.provider is None:
            raise _error(errno.ENXIO, path)
        self.instances[name] = Instance(self.provider)
        self.made.append(name)

    def rmdir(self, path: str) -> None:
        parent, name = posixpath.split(path)
        if parent != self.root or name not in self.instances:
            raise _error(errno.ENOENT, path)
        if self.rmdir_error is not None:
            raise _error(self.rmdir_error, path)
        del self.instances[name]
        self.removed.append(name)

    def exists(self, path: str) -> bool:
        if not self.present:
            return False
        if path == self.root:
            return True
        try:
            self._locate(path)
        except OSError:
            parent, name = posixpath.split(path)
            return parent == self.root and name in self.instances
        return True

    def writable(self, path: str) -> bool:
        return self.exists(path) and (path != self.root or self.root_writable)

    def read(self, path: str) -> bytes:
        instance, attr = self._locate(path)
        if attr in WRITE_ONLY:
            raise _error(errno.EACCES, path)
        if attr == "provider":
            if self.provider is None:
                raise _error(errno.ENXIO, path)
            return f"{instance.provider}\n".encode()
        if attr == "generation":
            return f"{instance.write_generation}\n".encode()
        if attr == "privlevel_floor":
            return f"{self.privlevel_floor}\n".encode()
        outblob, auxblob = self._blobs(instance, path)
        if attr == "manifestblob":
            return b""
        if attr == "outblob" and self.concurrent_writes > 0:
            self.concurrent_writes -= 1
            instance.inblob = b"\xee" * 64  # someone else's nonce
            instance.write_generation += 1
        return outblob if attr == "outblob" else auxblob

    def write(self, path: str, data: bytes) -> int:
        instance, attr = self._locate(path)
        if attr in READ_ONLY:
            raise _error(errno.EACCES, path)
        if attr == "inblob":
            if len(data) > 64:
                raise _error(errno.EFBIG, path)
            if self.busy:
                raise _error(errno.EBUSY, path)
            taken = data if self.short_write is None else data[:self.short_write]
            if not self.drop_writes:
                instance.inblob = bytes(taken)
                instance.write_generation += 1
            return len(taken)
        if attr.startswith("service_"):  # SVSM's; arm_cca_guest ignores them
            instance.write_generation += 1
            return len(data)
        # privlevel
        try:
            value = int(bytes(data).decode().strip(), 0)
        except ValueError:
            raise _error(errno.EINVAL, path) from None
        if not self.privlevel_floor <= value <= 3:
            raise _error(errno.EINVAL, path)
        instance.privlevel = value
        instance.write_generation += 1
        return len(data)

    # ------------------------------------------------------------------ kernel side

    def _locate(self, path: str) -> tuple[Instance, str]:
        directory, attr = posixpath.split(path)
        parent, name = posixpath.split(directory)
        instance = self.instances.get(name) if parent == self.root else None
        if instance is None or attr not in instance.attrs:
            raise _error(errno.ENOENT, path)
        return instance, attr

    def _blobs(self, instance: Instance, path: str) -> tuple[bytes, bytes]:
        if not instance.inblob:
            raise _error(errno.EINVAL, path)
        if instance.outblob is not None and instance.read_generation == instance.write_generation:
            return instance.outblob, instance.auxblob
        if self.provider is None:
            raise _error(errno.ENOTTY, path)
        cca = instance.provider == "arm_cca_guest"
        if len(instance.inblob) not in (range(32, 65) if cca else (64,)):
            raise _error(errno.EINVAL, path)
        if self.report_error is not None:
            raise _error(self.report_error, path)
        if instance.provider == "sev_guest":
            instance.outblob = blobs.snp_report(instance.inblob, instance.privlevel)
            instance.auxblob = self.certs
        elif cca:
            instance.outblob = blobs.cca_token(instance.inblob.ljust(64, b"\0"))
            instance.auxblob = b""
        else:
            instance.outblob = blobs.tdx_quote(instance.inblob)
            instance.auxblob = b""
        instance.read_generation = instance.write_generation
        self.reports += 1
        return instance.outblob, instance.auxblob
