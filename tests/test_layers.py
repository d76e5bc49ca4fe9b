"""The layers hold: a walk of every module's imports (including those inside functions)
fails on an import that crosses a boundary the design forbids, or on an import cycle among
module-level imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import paths

SRC = paths.REPO / "src"
PACKAGE = "attestcall"
VENDORS = ("attestcall.intel", "attestcall.amd", "attestcall.arm")
# What a vendor package must never reach: the layers above it.
ABOVE_VENDORS = ("attestcall.verifier", "attestcall.keep", "attestcall.deploy", "attestcall.cli")
# The bottom layer imports nothing of ours above it.
BOTTOM = ("attestcall.errors", "attestcall.abi", "attestcall.appraisal", "attestcall.der",
          "attestcall.lru", "attestcall.pki", "attestcall.fetch", "attestcall.diskcache",
          "attestcall.schema", "attestcall.linux.kernelfs", "attestcall.tees", "attestcall.tls",
          "attestcall.describe")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, *, top_level_only: bool = False, name: str | None = None) -> set[str]:
    """The attestcall modules ``path`` (module ``name``) imports (``from a import b`` counts
    ``a.b`` when that is a module, else ``a``)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


FILES = sorted((SRC / PACKAGE).rglob("*.py"))
MODULES = {module_name(p) for p in FILES}


def within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_walk_sees_the_whole_package():
    assert {"attestcall.abi", "attestcall.tees", "attestcall.intel.sgx"} <= MODULES


@pytest.mark.parametrize("path", [p for p in FILES if within(module_name(p), VENDORS)],
                         ids=module_name)
def test_vendor_packages_do_not_import_the_layers_above(path):
    assert {m for m in imports(path) if within(m, ABOVE_VENDORS)} == set()


@pytest.mark.parametrize("path", [p for p in FILES if within(module_name(p), BOTTOM)],
                         ids=module_name)
def test_the_bottom_layer_imports_only_the_bottom_layer(path):
    assert {m for m in imports(path) if not within(m, BOTTOM)} == set()


@pytest.mark.parametrize("path", [p for p in FILES if within(module_name(p),
                                                                 ("attestcall.verifier",))],
                         ids=module_name)
def test_the_verifier_never_imports_a_simulator_or_a_vendor(path):
    assert {m for m in imports(path) if "_sim" in m or within(m, VENDORS)} == set()


@pytest.mark.parametrize("path", [p for p in FILES if within(module_name(p),
                                                                 ("attestcall.show",
                                                                  "attestcall.describe"))],
                         ids=module_name)
def test_show_reaches_a_tee_only_through_the_registry(path):
    """`attestcall show` names no vendor module: each TEE's record brings its describer."""
    assert {m for m in imports(path) if "_sim" in m or within(m, VENDORS)} == set()


@pytest.mark.parametrize("path", FILES, ids=module_name)
def test_nothing_imports_the_cli(path):
    if within(module_name(path), ("attestcall.cli", "attestcall.__main__")):
        return
    assert {m for m in imports(path) if within(m, ("attestcall.cli",))} == set()


def test_no_import_cycle():
    graph = {module_name(p): imports(p, top_level_only=True) & MODULES for p in FILES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_a_forbidden_import_would_be_caught(tmp_path):
    """The walk itself can fail: a lazy, relative import of the verifier inside a function
    of a vendor module is seen."""
    probe = tmp_path / "probe.py"
    probe.write_text("def later():\n    from ...verifier import api\n    return api\n")
    found = imports(probe, name="attestcall.intel.sub.probe")
    assert {m for m in found if within(m, ABOVE_VENDORS)} == {"attestcall.verifier.api"}
