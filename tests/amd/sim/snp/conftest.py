from __future__ import annotations

import pytest

from attestcall.amd.sim import snp as snp_sim


@pytest.fixture
def milan() -> snp_sim.SnpPlatform:
    return snp_sim.snp_platform("milan")


def make_psp(platform: snp_sim.SnpPlatform, payload: bytes = b"payload", key: bytes = bytes(
        range(32)), **kw: object) -> snp_sim.SimulatedPsp:
    launch = snp_sim.GuestLaunch.for_payload(payload)
    return snp_sim.SimulatedPsp(platform.chip, launch, key, platform.signer, **kw)  # type: ignore[arg-type]
