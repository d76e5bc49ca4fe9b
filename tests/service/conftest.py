from collections.abc import Iterator

import pytest

from attestcall.keep.platforms import open_keep
from tests.service.helpers import TEES


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
