"""Linux's guest interfaces that serve more than one TEE: configfs-tsm (``tsm``), and the
kernel pseudo-file helpers the device clients share (``kernelfs``).

``TSM`` is the registry's record of the configfs-tsm keep (the entry point ``tsm``): it
serves whichever TEE's provider the kernel has, so it belongs to no single TEE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall.tees import Backend, KeepServices, OpenedKeep, Probe


def _open(payload: bytes, options: Mapping[str, Any], services: KeepServices) -> OpenedKeep:
    from attestcall.linux.tsm import open_tsm

    return open_tsm(payload, options, services)


def _probe(options: Mapping[str, Any]) -> Probe:
    from attestcall.linux.tsm import probe

    return probe(options)


TSM = Backend("tsm", _open, simulated=False, probe=_probe, order=10)
