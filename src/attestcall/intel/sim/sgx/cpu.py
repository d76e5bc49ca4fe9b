"""EREPORT on a simulated SGX CPU: :class:`SimulatedCpu` MACs a REPORT body with
AES-128-CMAC under the *target* enclave's report key.

Report key derivation (the simulated EGETKEY/EREPORT key) is HKDF-SHA256 with no salt,
input keying material the 32-byte CPU secret, 16 bytes out, and ``info`` =
``b"attestcall-sim SGX REPORT key v1"`` || target MRENCLAVE (32) || target ATTRIBUTES (16)
|| CET_ATTRIBUTES (1) || CONFIGSVN (2, LE) || MISCSELECT (4, LE) || CONFIGID (64) ||
CPUSVN (16) || KEYID (32): the same dependencies the real key has, so a REPORT made for
another target, or under another CPU, does not verify.
"""

from __future__ import annotations

import functools
import os
import struct

from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestcall.errors import AttestcallError
from attestcall.intel.formats.structs import SgxFormatError, TargetInfo
from attestcall.intel.sim.sgx.identity import REPORT_DATA_SIZE, EnclaveIdentity
from attestcall.intel.sim.sgx.state import SgxState

_REPORT_KEY_LABEL = b"attestcall-sim SGX REPORT key v1"


class EreportError(AttestcallError, ValueError):
    """EREPORT was called with a TARGETINFO or REPORTDATA of the wrong size or form."""


@functools.lru_cache(maxsize=256)
def _derive_report_key(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(secret)


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(data)
    return mac.finalize()


class SimulatedCpu:
    """EREPORT on a simulated SGX CPU. The KEYID is chosen per instance ("per boot")."""

    def __init__(self, state: SgxState) -> None:
        self._secret = state.cpu_secret
        self.cpu_svn = state.cpu_svn
        self.key_id = os.urandom(32)
        self._targets: dict[bytes, TargetInfo] = {}

    def report_key(self, target: TargetInfo, key_id: bytes) -> bytes:
        """The REPORT key of ``target`` (what EGETKEY gives that enclave for ``key_id``)."""
        info = b"".join((
            _REPORT_KEY_LABEL, target.mr_enclave, target.attributes,
            struct.pack("<BHI", target.cet_attributes, target.config_svn, target.misc_select),
            target.config_id, self.cpu_svn, key_id,
        ))  # fmt: skip
        return _derive_report_key(self._secret, info)

    def _target(self, targetinfo: bytes) -> TargetInfo:
        target = self._targets.get(targetinfo)
        if target is None:
            if len(targetinfo) != TargetInfo.SIZE:
                size = len(targetinfo)
                raise EreportError(f"TARGETINFO must be {TargetInfo.SIZE} bytes, got {size}")
            try:
                target = TargetInfo.unpack(targetinfo)
            except SgxFormatError as exc:
                raise EreportError(f"bad TARGETINFO: {exc}") from exc
            if len(self._targets) < 64:
                self._targets[bytes(targetinfo)] = target
        return target

    def ereport(self, targetinfo: bytes, reportdata: bytes, identity: EnclaveIdentity) -> bytes:
        """The 432-byte REPORT ``identity`` gets from EREPORT for ``targetinfo``."""
        if len(reportdata) != REPORT_DATA_SIZE:
            size = len(reportdata)
            raise EreportError(f"REPORTDATA must be {REPORT_DATA_SIZE} bytes, got {size}")
        target = self._target(bytes(targetinfo))
        body = _body_prefix(identity, self.cpu_svn) + bytes(reportdata)
        return body + self.key_id + _cmac(self.report_key(target, self.key_id), body)


@functools.lru_cache(maxsize=64)
def _body_prefix(identity: EnclaveIdentity, cpu_svn: bytes) -> bytes:
    """The first 320 bytes of the REPORT body: everything but REPORTDATA."""
    return identity.report_body(cpu_svn, bytes(REPORT_DATA_SIZE)).pack()[:-REPORT_DATA_SIZE]
