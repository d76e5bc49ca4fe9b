"""Linux's guest interfaces that serve more than one TEE: configfs-tsm (``tsm``), and the
kernel pseudo-file helpers the device clients share (``kernelfs``).

``TSM`` is the registry's record of the configfs-tsm keep (the entry point ``tsm``): it
serves whichever TEE's provider the kernel has, so it belongs to no single TEE."""

from __future__ import annotations

from attestcall.tees import Backend, lazy

TSM = Backend("tsm", lazy("attestcall.linux.tsm:open_tsm"), simulated=False,
              probe=lazy("attestcall.linux.tsm:probe"), order=10)
