import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from attestcall.keep.platforms import open_keep
from tests.service.helpers import TEES, Served, environment


@pytest.fixture(scope="module")
def keeps(tmp_path_factory) -> Iterator[dict]:
    """The three simulated keeps, open for the module (their evidence on demand)."""
    home = tmp_path_factory.getbasetemp() / "attestcall-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(home))
        opened = {name: open_keep(name, b"") for name in TEES}
        try:
            yield {name: keep.source for name, keep in opened.items()}
        finally:
            for keep in opened.values():
                keep.close()


@pytest.fixture
def env(tmp_path_factory, tmp_path) -> dict[str, str]:
    """Replicas' and CLI commands' environment; an XDG data directory of the test's own, so
    a command that wrongly reached for a default home would show."""
    env = environment(tmp_path_factory.getbasetemp() / "attestcall-home")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    return env


@pytest.fixture
def home(tmp_path) -> Path:
    """The one service home (CA key and certificate) every replica of a test shares."""
    return tmp_path / "home"


@pytest.fixture
def replica(env, home) -> Iterator[Callable[..., Served]]:
    """``replica(url, *options)``: ``service serve`` on ``url``, the shared home, simulated
    roots trusted; every one is stopped (killed if it must be) when the test ends."""
    started: list[Served] = []
    lock = threading.Lock()

    def start(url: str, *options: str) -> Served:
        served = Served(env, "--database", url, "--home", str(home), "--trust-simulated",
                        *options)
        with lock:
            started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
