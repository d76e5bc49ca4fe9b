from __future__ import annotations

import pytest

from attestcall.intel.sim import tdx as tdx_sim


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tdx_sim.TdxState:
    """The session's simulated TDX platform (the same home the autouse fixture sets)."""
    return tdx_sim.load_state(tmp_path_factory.getbasetemp() / "attestcall-home")
