"""What the `attestcall show` tests share: the command run in-process and as a process, and
the README's documented top-level keys per kind."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from attestcall.cli import main
from tests import paths


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``attestcall show ARGS`` in this process: (exit status, stdout, stderr)."""
    code = main(["show", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def shown(capsys, path, *more: str) -> dict:
    """The --json tree of ``path``, which must be shown (exit 0, nothing on stderr)."""
    code, out, err = run(capsys, path, "--json", *more)
    assert code == 0 and err == "", err
    return json.loads(out)


def process(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """``python -m attestcall show ARGS`` as a real process."""
    return subprocess.run([sys.executable, "-m", "attestcall", "show", *map(str, args)],
                          input=stdin, capture_output=True, timeout=120)


def documented_keys() -> dict[str, tuple[set[str], set[str]]]:
    """kind -> (always-present keys, keys present only sometimes), from the README's table
    between the show-json-keys markers."""
    text = (paths.REPO / "README.md").read_text()
    table = text.split("<!-- show-json-keys -->")[1].split("<!-- /show-json-keys -->")[0]
    kinds: dict[str, tuple[set[str], set[str]]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        kind = cells[0].strip("`")
        optional = set(re.findall(r"\[`([a-z0-9_]+)`", cells[1]))
        always = set(re.findall(r"`([a-z0-9_]+)`", re.sub(r"\[[^]]*\]", "", cells[1])))
        kinds[kind] = (always, optional)
    return kinds


DOCUMENTED = documented_keys()


def assert_documented(tree: dict) -> None:
    """The tree's top-level keys are exactly what the README documents for its kind (plus
    ``pem_label`` for PEM input)."""
    always, optional = DOCUMENTED[tree["kind"]]
    keys = set(tree) - ({"pem_label"} if tree.get("encoding") == "pem" else set())
    assert always <= keys <= always | optional, (tree["kind"], keys ^ always)
    json.dumps(tree)  # JSON-able
