"""The package as others consume it: its exports, its type information, its licence."""

import subprocess
import sys
import tomllib

import pytest

import attestcall
from attestcall import errors
from tests import paths


def test_the_readme_s_exceptions_are_exported():
    for name in ("AttestcallError", "EvidenceError", "CollateralError", "PolicyError",
                 "UsageError"):
        assert getattr(attestcall, name) is getattr(errors, name)
    for name in attestcall.__all__:
        assert getattr(attestcall, name) is not None
    with pytest.raises(attestcall.UsageError, match="policy must be"):
        attestcall.verify(b"", policy=1)


def test_exports_load_lazily():
    """A payload importing attestcall (for the guest library) does not pay for the
    verifier: the exceptions come in only when asked for."""
    code = ("import sys, attestcall; assert 'attestcall.verifier.api' not in sys.modules; "
            "attestcall.PolicyError; assert 'attestcall.verifier.api' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_typed_and_licensed():
    package = paths.REPO / "src" / "attestcall"
    assert (package / "py.typed").is_file()  # PEP 561
    project = tomllib.loads((paths.REPO / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["attestcall"]
    assert project["project"]["license"] == {"text": "Apache-2.0"}
    licence = (paths.REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the whole text, not a pointer to it
