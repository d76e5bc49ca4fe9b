"""Where the installed C header lives, for ``attestcall include-dir`` and ``-I``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

HEADER = "attestcall.h"


def include_dir() -> Path:
    """The directory holding ``attestcall.h`` (package data of ``attestcall``).

    Raises FileNotFoundError when the package is installed in a form without a directory
    on disk (a zip, say), where no compiler could use it.
    """
    directory = Path(str(resources.files("attestcall").joinpath("include")))
    if not (directory / HEADER).is_file():
        raise FileNotFoundError(f"{HEADER} is not installed as a file under {directory}")
    return directory
