"""Where TEEs are registered: a name on the command line → a keep (shim + host).

Adding a TEE means one module for it and one line in ``_OPENERS``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from attestcall.abi import EvidenceSource
from attestcall.errors import UsageError
from attestcall.keep.block import RequestBlock
from attestcall.keep.host import Host, HostProcess, SgxHost
from attestcall.keep.shim import DEFAULT_TIMEOUT, Channel, NoneSource, SgxShim


@dataclass
class Keep:
    """A running keep: the shim's EvidenceSource and the host process behind it."""

    tee: str
    source: EvidenceSource
    host: HostProcess | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None

    def __enter__(self) -> Keep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_host(host: Host, timeout: float = DEFAULT_TIMEOUT) -> tuple[Channel, HostProcess]:
    """Give ``host`` a request block and a process; return the shim's channel to it."""
    block = RequestBlock()
    process = HostProcess(host, block).start()
    return Channel(block, process, timeout), process


def _open_none(payload: bytes, options: Mapping[str, Any]) -> Keep:
    return Keep("none", NoneSource())


def _open_sgx_sim(payload: bytes, options: Mapping[str, Any]) -> Keep:
    from attestcall.intel import sgx_sim

    state = sgx_sim.load_state()
    identity = sgx_sim.EnclaveIdentity.for_payload(payload, state)
    overrides = {k: v for k, v in options.get("identity", {}).items() if v is not None}
    if overrides:
        identity = identity.replace(**overrides)
    channel, host = start_host(
        SgxHost(sgx_sim.QuotingEnclave(state)), options.get("timeout", DEFAULT_TIMEOUT)
    )
    shim = SgxShim(sgx_sim.SimulatedCpu(state), identity, channel)
    return Keep("sgx-sim", shim, host, {"identity": identity})


_OPENERS: dict[str, Callable[[bytes, Mapping[str, Any]], Keep]] = {
    "none": _open_none,
    "sgx-sim": _open_sgx_sim,
}

TEE_NAMES = ("auto", *_OPENERS)


def detect_hardware() -> str | None:
    """The real TEE backend usable here, if any. No real backend exists yet."""
    return None


def resolve_tee(requested: str, stderr: TextIO = sys.stderr) -> str:
    """Turn ``auto`` into a concrete TEE name, saying on stderr when it falls back to none."""
    if requested != "auto":
        if requested not in _OPENERS:
            raise UsageError(f"unknown TEE {requested!r}; choose one of {', '.join(TEE_NAMES)}")
        return requested
    found = detect_hardware()
    if found is None:
        print("attestcall: no TEE hardware found; using --tee none (technology 0)", file=stderr)
        return "none"
    return found


def open_keep(tee: str, payload: bytes = b"", **options: Any) -> Keep:
    """Start a keep for ``tee`` (a concrete name, see resolve_tee) measuring ``payload``.

    Options: ``identity`` (dict of enclave-identity overrides for SGX), ``timeout``
    (seconds the shim waits for the host)."""
    try:
        opener = _OPENERS[tee]
    except KeyError:
        raise UsageError(f"unknown TEE {tee!r}; choose one of {', '.join(TEE_NAMES)}") from None
    return opener(payload, options)
