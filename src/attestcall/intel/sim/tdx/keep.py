"""TDX in the keep: the trusted shim's TDG.MR.REPORT-and-quote flow and the host's relay to
the quote service (both simulated by attestcall.intel.sim.tdx).

The shim asks the (simulated) TDX module for a TDREPORT with the nonce as REPORTDATA and
hands it to the host (``Op.TDX_QUOTE``); the host's quote service checks the TDREPORT's
MAC and returns a DCAP quote. The shim never parses the quote. It checks only what it can
compare byte for byte at fixed places: the quote has the size the host announced
(``Op.TDX_QUOTE_SIZE``), and its header version and TD report body are exactly the ones
its own TDREPORT gives (so a quote of another nonce or another TD is refused). Every
failure is a HostFailure (-EIO for the payload).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from attestcall.abi import HostFailure, Technology
from attestcall.errors import HostError, UsageError
from attestcall.intel.formats.tdx_quote import (
    BODY_TD15,
    QUOTE_VERSION_4,
    QUOTE_VERSION_5,
    TD15_SIZE,
)
from attestcall.intel.sim import tdx as tdx_sim
from attestcall.intel.sim.tdx import TdIdentity, TdReportError
from attestcall.intel.sim.tdx.report import quote_body_bytes
from attestcall.tees import Channel, KeepServices, OpenedKeep

_HEADER_SIZE = 48
_MEASUREMENT_OPTIONS = ("rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner",
                        "mrownerconfig")  # fmt: skip



class Op(IntEnum):
    """The request-block ops of the TDX keep."""

    TDX_QUOTE_SIZE = 32  # -> u32 size of the quote the quote service would produce now
    TDX_QUOTE = 33  # TDREPORT (1024 bytes) -> quote

class TdxShim:
    """TDX: TDG.MR.REPORT on the (simulated) TDX module, then the host's quote service."""

    technology = Technology.TDX

    def __init__(self, module: tdx_sim.SimulatedTdxModule, identity: TdIdentity,
                 channel: Channel, quote_version: int = QUOTE_VERSION_4):  # fmt: skip
        if quote_version not in (QUOTE_VERSION_4, QUOTE_VERSION_5):
            raise ValueError(f"quote version must be 4 or 5, not {quote_version!r}")
        self.module = module
        self.identity = identity
        self.channel = channel
        self.quote_version = quote_version
        self._size: int | None = None
        # What the quote must hold before its TD report body: the version, and in v5 the
        # body type and size.
        self._version_bytes = struct.pack("<H", quote_version)
        self._body_at = _HEADER_SIZE
        self._body_prefix = b""
        if quote_version == QUOTE_VERSION_5:
            self._body_prefix = struct.pack("<HI", BODY_TD15, TD15_SIZE)
            self._body_at += len(self._body_prefix)

    def evidence_size(self) -> int:
        """The quote's size: asked of the host once, then kept (a quote's size changes only
        with the platform's certificate chain); a quote of another size clears it, so the
        call that sees the change fails with -EIO and the next size query is right."""
        if self._size is not None:
            return self._size
        self._size = self.channel.ask_size(Op.TDX_QUOTE_SIZE, self._body_at + TD15_SIZE + 1)
        return self._size

    def evidence(self, nonce: bytes) -> bytes:
        size = self._size if self._size is not None else self.evidence_size()
        try:
            tdreport = self.module.report(nonce, self.identity)
        except TdReportError as exc:
            raise HostFailure(f"TDG.MR.REPORT failed: {exc}") from exc
        body = quote_body_bytes(tdreport, self.quote_version == QUOTE_VERSION_5)
        try:
            quote = self.channel.call(Op.TDX_QUOTE, tdreport, size)
        except HostFailure:
            self._size = None  # perhaps the size changed: ask again next time
            raise
        if len(quote) != size:
            self._size = None
            raise HostFailure(f"quote of {len(quote)} bytes, {size} were announced")
        end = self._body_at + len(body)
        if (
            quote[0:2] != self._version_bytes
            or quote[_HEADER_SIZE : self._body_at] != self._body_prefix
            or quote[self._body_at : end] != body
        ):
            raise HostFailure("the quote does not quote this TD's TDREPORT")
        return quote


class TdxHost:
    """Relays the shim's TDREPORT to the (simulated) TD quoting enclave."""

    def __init__(self, quote_service: tdx_sim.TdQuotingEnclave):
        self.quote_service = quote_service

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == Op.TDX_QUOTE_SIZE:
            return struct.pack("<I", self.quote_service.quote_size())
        if op == Op.TDX_QUOTE:
            return self.quote_service.quote(data)
        raise HostError(f"unsupported op {op}", errno.ENOSYS)


def _measurement(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise UsageError(f"{name} must be 48 bytes of hex") from None
    if not isinstance(value, bytes | bytearray) or len(value) != 48:
        raise UsageError(f"{name} must be 48 bytes (96 hex digits)")
    return bytes(value)


def _u64(name: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise UsageError(f"{name} must be an integer") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise UsageError(f"{name} must be a 64-bit unsigned integer")
    return value


def td_identity(payload: bytes, options: Mapping[str, Any]) -> TdIdentity:
    """The TD identity for ``payload`` with the options' overrides (None keeps a default)."""
    overrides: dict[str, Any] = {}
    for name in _MEASUREMENT_OPTIONS:
        if options.get(name) is not None:
            overrides[name] = _measurement(name, options[name])
    for name in ("xfam", "td_attributes"):
        if options.get(name) is not None:
            overrides[name] = _u64(name, options[name])
    if options.get("debug") is not None:
        overrides["debug"] = bool(options["debug"])
    return TdIdentity.for_payload(payload, **overrides)


def open_tdx_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices) -> OpenedKeep:
    """A keep on the simulated TDX platform, its TD measured from ``payload``.

    Options (each may be absent or None for the default):

    - ``quote_version``: 4 (default; TD 1.0 body) or 5 (TD 1.5 body);
    - ``rtmr0`` .. ``rtmr3``, ``mrconfigid``, ``mrowner``, ``mrownerconfig``: 48 bytes, or
      96 hex digits (default zero);
    - ``xfam``: 64-bit integer (or a string ``int(s, 0)`` reads; default 0x206E7);
    - ``td_attributes``: 64-bit integer (default 0x10000000, SEPT_VE_DISABLE, DEBUG off);
    - ``debug``: True sets, False clears the DEBUG bit (bit 0) of ``td_attributes``;
    - ``timeout``: seconds the shim waits for the host (default 10).

    Raises UsageError for a bad option value.
    """
    version = options.get("quote_version")
    version = QUOTE_VERSION_4 if version is None else version
    if version not in (QUOTE_VERSION_4, QUOTE_VERSION_5) or isinstance(version, bool):
        raise UsageError(f"quote_version must be 4 or 5, not {version!r}")
    identity = td_identity(payload, options)
    state = tdx_sim.load_state()
    channel = services.start_host(TdxHost(tdx_sim.TdQuotingEnclave(state, version)))
    shim = TdxShim(tdx_sim.SimulatedTdxModule(state), identity, channel, version)
    return OpenedKeep(shim, {"identity": identity, "quote_version": version})
