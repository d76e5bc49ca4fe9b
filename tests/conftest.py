import pytest


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Every test sees one simulated-platform home and one collateral cache for the session,
    never the user's, and is offline: no default collateral service (Intel's PCS, AMD's
    KDS) is ever asked; a test of those defaults points them at a local fake."""
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    monkeypatch.setenv("ATTESTCALL_OFFLINE", "1")
    monkeypatch.delenv("ATTESTCALL_PCCS_URL", raising=False)
    monkeypatch.delenv("ATTESTCALL_KDS_URL", raising=False)
    monkeypatch.setenv("ATTESTCALL_HOME", str(home))
    monkeypatch.setenv("ATTESTCALL_CACHE", str(tmp_path_factory.getbasetemp() / "attestcall-cache"))
    yield home


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/postgres.py), started on first use."""
    from tests.postgres import cluster

    with cluster() as server:
        yield server


@pytest.fixture
def pg_url(postgres) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    if not postgres.running:  # a test that stopped the server must not break the next
        postgres.start()
    return postgres.create_database()
