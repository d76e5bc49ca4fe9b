"""The simulated SGX keep (``--tee sgx-sim``): the trusted shim's EREPORT-and-quote flow
and the host's relay to the quoting enclave (simulated by attestcall.intel.sim.sgx)."""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from attestcall.abi import HostFailure, Technology
from attestcall.errors import HostError
from attestcall.intel.formats.structs import SgxFormatError, TargetInfo
from attestcall.intel.sim import sgx as sgx_sim
from attestcall.intel.sim.sgx import EreportError
from attestcall.tees import Channel, KeepServices, OpenedKeep


class Op(IntEnum):
    """The request-block ops of the SGX keep."""

    SGX_TARGET_INFO = 1  # -> 512-byte TARGETINFO of the quoting enclave
    SGX_QUOTE_SIZE = 2  # -> u32 size of the quote the QE would produce now
    SGX_QUOTE = 3  # REPORT (432 bytes) -> quote


TARGET_INFO_SIZE = 512
REPORT_SIZE = 432


class SgxShim:
    """SGX: EREPORT on the (simulated) CPU targeted at the QE, then the host relays the
    report to the QE and returns its quote."""

    technology = Technology.SGX

    def __init__(self, cpu, identity, channel: Channel):
        self.cpu = cpu
        self.identity = identity
        self.channel = channel
        self._size: int | None = None
        self._qe_target: bytes | None = None

    def evidence_size(self) -> int:
        """The quote's size: asked of the host once, then kept (a quote's size changes only
        with the platform's certificate chain); a quote of another size clears it, so the
        call that sees the change fails with -EIO and the next size query is right."""
        if self._size is not None:
            return self._size
        self._size = self.channel.ask_size(Op.SGX_QUOTE_SIZE)
        return self._size

    def evidence(self, nonce: bytes) -> bytes:
        size = self._size if self._size is not None else self.evidence_size()
        try:
            report = self.cpu.ereport(self._target_info(), nonce, self.identity)
        except EreportError as exc:
            raise HostFailure(f"EREPORT refused the host's TARGETINFO: {exc}") from exc
        try:
            quote = self.channel.call(Op.SGX_QUOTE, report, size)
        except HostFailure:
            self._qe_target = self._size = None  # perhaps the QE changed: ask again
            raise
        if len(quote) != size:
            self._qe_target = self._size = None
            raise HostFailure(f"quote of {len(quote)} bytes, {size} were announced")
        return quote

    def _target_info(self) -> bytes:
        """The QE's TARGETINFO, asked once (as enclaves do at start) and kept until a quote
        request fails. A malformed one is refused here, before EREPORT uses it."""
        if self._qe_target is None:
            target_info = self.channel.call(Op.SGX_TARGET_INFO, b"", TARGET_INFO_SIZE)
            if len(target_info) != TARGET_INFO_SIZE:
                raise HostFailure(f"TARGETINFO of {len(target_info)} bytes, expected 512")
            try:
                TargetInfo.unpack(target_info)
            except SgxFormatError as exc:
                raise HostFailure(f"the host's TARGETINFO is malformed: {exc}") from exc
            self._qe_target = target_info
        return self._qe_target


class SgxHost:
    """Relays the shim's REPORT to the (simulated) quoting enclave."""

    def __init__(self, quoting_enclave):
        self.qe = quoting_enclave

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == Op.SGX_TARGET_INFO:
            return self.qe.target_info()
        if op == Op.SGX_QUOTE_SIZE:
            return struct.pack("<I", self.qe.quote_size())
        if op == Op.SGX_QUOTE:
            return self.qe.quote(data)
        raise HostError(f"unsupported op {op}", errno.ENOSYS)


def open_sgx_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices) -> OpenedKeep:
    """A keep on the simulated SGX platform. Options: ``identity`` (a mapping of enclave
    identity overrides: mrenclave, mrsigner, isv_prod_id, isv_svn), ``debug``."""
    state = sgx_sim.load_state()
    identity = sgx_sim.EnclaveIdentity.for_payload(payload, state)
    overrides = {k: v for k, v in (options.get("identity") or {}).items() if v is not None}
    if options.get("debug"):
        overrides["debug"] = True
    if overrides:
        identity = identity.replace(**overrides)
    channel = services.start_host(SgxHost(sgx_sim.QuotingEnclave(state)))
    shim = SgxShim(sgx_sim.SimulatedCpu(state), identity, channel)
    return OpenedKeep(shim, {"identity": identity})
