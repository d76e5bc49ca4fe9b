import pytest


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Every test sees one simulated-platform home and one collateral cache for the session,
    never the user's."""
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    monkeypatch.setenv("ATTESTCALL_HOME", str(home))
    monkeypatch.setenv("ATTESTCALL_CACHE", str(tmp_path_factory.getbasetemp() / "attestcall-cache"))
    yield home
