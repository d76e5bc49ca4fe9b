"""The real TEE interfaces of the machine we run on, as the registry lists them.

Each real backend (configfs-tsm, /dev/sev-guest, Gramine's /dev/attestation, efi_secret,
and whatever a plugin adds) lives with its device client and registers a probe. Here the
guest kernel (or Gramine's LibOS) is the trusted side that talks to the platform, so there
is no untrusted host process in the keep, and the payload is not measured by attestcall:
the evidence covers what the platform measured at launch.

:func:`probe` says which backends this machine offers and why the others are not usable;
:func:`detect` picks the first usable one (``--tee auto``). Every path is an option
(``tsm_root``, ``sev_guest_path``, ``gramine_root``, ``efi_secret_root``, ``files``) so
that tests point them at fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attestcall.tees import Probe, registry


def probe(options: Mapping[str, Any] | None = None) -> list[Probe]:
    """Every real backend, in detection order."""
    options = options or {}
    return [backend.probe(options) for backend in registry().real_backends()
            if backend.probe is not None]


def detect(options: Mapping[str, Any] | None = None) -> str | None:
    """The name of the first usable real backend, or None."""
    return next((result.name for result in probe(options) if result.usable), None)


def describe_probes(results: Sequence[Probe]) -> str:
    """What ``attestcall devices`` prints: one line per backend, then the choice."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        state = "usable" if result.usable else "unusable"
        lines.append(f"{result.name:<{width}}  {state:<8}  {result.path}: {result.detail}")
    chosen = next((r.name for r in results if r.usable), None)
    lines.append(f"--tee auto would use: {chosen}" if chosen else
                 "--tee auto would use: none (no real TEE interface found)")
    return "\n".join(lines) + "\n"
