"""The SEV plugin record (technology 1): pre-attestation. ``buf`` holds the DER PKCS#8
private key the tenant delivered with LAUNCH_SECRET, not evidence; the tenant checks the
launch measurement before it delivers the key (policy table ``[sev]``).

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attestcall.amd.validate import SEV_POLICY
from attestcall.tees import Backend, KeepServices, OpenedKeep, Probe, SimState, Tee


def _open_sim(payload: bytes, options: Mapping[str, Any], services: KeepServices) -> OpenedKeep:
    from attestcall.amd.sim.sev.keep import open_sev_sim

    return open_sev_sim(payload, options, services)


def _open_efi_secret(payload: bytes, options: Mapping[str, Any],
                     services: KeepServices) -> OpenedKeep:
    from attestcall.amd.client.efi_secret import open_efi_secret

    return open_efi_secret(payload, options, services)


def _probe_efi_secret(options: Mapping[str, Any]) -> Probe:
    from attestcall.amd.client.efi_secret import probe

    return probe(options)


def simulated_roots() -> list[bytes]:
    """The simulated SEV platform's ARK (AMD's SEV certificate format), for a tenant that
    trusts the simulator explicitly."""
    from attestcall.amd.sim.sev import simulated_ark

    return [simulated_ark()]


def _create_state(folder: Any) -> None:
    from attestcall.amd.sim.sev.state import create_state

    create_state(folder)


def _describe_state(folder: Any) -> str:
    from attestcall.amd.sim.sev.state import describe_state

    return describe_state(folder)


TEE = Tee(
    technology=1,
    name="sev",
    title="SEV launch secret",
    policy=SEV_POLICY,
    debug_word="guest",
    pre_attestation=True,
    simulated_roots=simulated_roots,
    backends=(
        Backend("sev-sim", _open_sim, simulated=True),
        Backend("efi-secret", _open_efi_secret, simulated=False, probe=_probe_efi_secret,
                order=40),
    ),
    sim_state=SimState("sev", _create_state, _describe_state),
)
