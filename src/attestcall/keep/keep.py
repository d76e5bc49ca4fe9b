"""A running keep: the shim's evidence source and, where the platform needs one, the
untrusted host process behind it; for a TEE whose owner provisions the keep (SEV
pre-attestation), what launches a fresh keep for a remote owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attestcall.abi import EvidenceSource
from attestcall.keep.block import RequestBlock
from attestcall.keep.host import Host, HostProcess
from attestcall.keep.shim import DEFAULT_TIMEOUT, Channel
from attestcall.tees import HostHandler


@dataclass
class Keep:
    """A running keep: the shim's EvidenceSource and the host process behind it.

    ``provisioner`` is set by the openers of TEEs whose keeps get their secret from their
    owner at launch (pre-attestation): an object following
    ``attestcall.deploy.provisioning.Provisioner`` (``technology``, ``owner_choices``,
    ``describe()``, ``launch()`` giving a fresh launch driven by a remote owner). The keep
    itself was provisioned by a local owner (the opener); a server that serves remote
    owners uses the provisioner instead (``attestcall keep serve``)."""

    tee: str
    source: EvidenceSource
    host: HostProcess | None = None
    details: dict[str, Any] = field(default_factory=dict)
    provisioner: object | None = None

    def close(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None

    def __enter__(self) -> Keep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_host(
    host: Host | HostHandler, timeout: float = DEFAULT_TIMEOUT
) -> tuple[Channel, HostProcess]:
    """Give ``host`` (a Host, or a plugin's handler) a request block and a process; return
    the shim's channel to it."""
    block = RequestBlock()
    process = HostProcess(Host.for_handler(host), block).start()
    return Channel(block, process, timeout), process


class KeepServices:
    """What a TEE plugin's keep opener gets (:class:`attestcall.tees.KeepServices`): one
    untrusted host process per keep, stopped with the keep."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.process: HostProcess | None = None

    def start_host(self, handler: HostHandler) -> Channel:
        if self.process is not None:
            raise RuntimeError("a keep has one host process")
        channel, self.process = start_host(handler, self.timeout)
        return channel

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
