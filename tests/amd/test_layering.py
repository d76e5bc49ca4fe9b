"""The AMD package stands on the bottom layer only: importing any of its modules loads no
verifier, keep, deploy or CLI code, and the production verifier loads no simulator."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import attestcall.amd

FORBIDDEN = ("attestcall.verifier", "attestcall.keep", "attestcall.deploy", "attestcall.cli")


def loaded_after(*modules: str) -> set[str]:
    code = ("import importlib, sys\n"
            f"for name in {list(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            "from attestcall.amd.roots import amd_arks, amd_asks\n"
            "amd_arks(), amd_asks()\n"  # the pinned roots are read on first use
            "print('\\n'.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return set(done.stdout.split())


def test_no_amd_module_loads_the_upper_layers():
    names = [info.name for info in pkgutil.walk_packages(attestcall.amd.__path__,
                                                         "attestcall.amd.")]
    assert "attestcall.amd.verify.appraise" in names and "attestcall.amd.sim.snp.certs" in names
    loaded = loaded_after(*names)
    assert {name for name in loaded if name.startswith(FORBIDDEN)} == set()


def test_the_verifier_loads_no_simulator():
    loaded = loaded_after("attestcall.amd.verify.appraise", "attestcall.amd.fetch.kds",
                          "attestcall.amd.fetch.source")
    assert {name for name in loaded if name.endswith("_sim") or "_sim." in name} == set()
