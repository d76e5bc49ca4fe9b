"""The SEV plugin record (technology 1): pre-attestation. ``buf`` holds the DER PKCS#8
private key the tenant delivered with LAUNCH_SECRET, not evidence; the tenant checks the
launch measurement before it delivers the key (policy table ``[sev]``).

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

from attestcall.amd.validate import SEV_POLICY
from attestcall.tees import Backend, SimState, Tee, lazy


def simulated_roots() -> list[bytes]:
    """The simulated SEV platform's ARK (AMD's SEV certificate format), for a tenant that
    trusts the simulator explicitly."""
    from attestcall.amd.sim.sev import simulated_ark

    return [simulated_ark()]


TEE = Tee(
    technology=1,
    name="sev",
    title="SEV launch secret",
    policy=SEV_POLICY,
    debug_word="guest",
    pre_attestation=True,
    simulated_roots=simulated_roots,
    launch_digest=lazy("attestcall.amd.sim.sev.keep:expected_digest"),
    backends=(
        Backend("sev-sim", lazy("attestcall.amd.sim.sev.keep:open_sev_sim"), simulated=True),
        Backend("efi-secret", lazy("attestcall.amd.client.efi_secret:open_efi_secret"),
                simulated=False, probe=lazy("attestcall.amd.client.efi_secret:probe"), order=40),
    ),
    describe=lazy("attestcall.amd.formats.describe:describe_sev"),
    sim_state=SimState("sev", lazy("attestcall.amd.sim.sev.state:create_state"),
                       lazy("attestcall.amd.sim.sev.state:describe_state")),
)
