"""Every vector and pinned root is the file its PROVENANCE.md describes: each digest listed
matches, and no data file sits beside a PROVENANCE.md without being listed in it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from cryptography import x509

from tests import paths

REPO = paths.REPO
RECORDS = sorted([*(REPO / "src").rglob("PROVENANCE.md"), *(REPO / "tests").rglob("PROVENANCE.md")])
DIGEST_LINE = re.compile(r"^\s+([0-9a-f]{64})\s+(\S+)\s*$", re.MULTILINE)
NOT_DATA = {"PROVENANCE.md", "__init__.py", "__pycache__"}


def listed(record: Path) -> dict[str, str]:
    return {name: digest for digest, name in DIGEST_LINE.findall(record.read_text())}


def test_the_records_are_found():
    folders = {r.parent.relative_to(REPO).as_posix() for r in RECORDS}
    assert {"src/attestcall/intel/roots", "src/attestcall/amd/roots", "tests/data/intel",
            "tests/data/amd"} <= folders


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.parent.relative_to(REPO).as_posix())
def test_every_listed_digest_matches(record):
    digests = listed(record)
    assert digests, f"{record} lists no SHA-256"
    for name, digest in digests.items():
        assert hashlib.sha256((record.parent / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.parent.relative_to(REPO).as_posix())
def test_every_data_file_is_listed(record):
    present = {p.name for p in record.parent.iterdir() if p.is_file()} - NOT_DATA
    assert present - set(listed(record)) == set()


def test_the_pinned_amd_roots_are_the_published_bundles():
    roots = REPO / "src" / "attestcall" / "amd" / "roots"
    data = REPO / "tests" / "data" / "amd"
    for product in ("milan", "genoa", "turin"):
        ask, ark = x509.load_pem_x509_certificates((data / f"ask_ark_{product}.pem").read_bytes())
        pinned = {kind: x509.load_pem_x509_certificate(
            (roots / f"amd_{kind}_{product}.pem").read_bytes()) for kind in ("ask", "ark")}
        assert pinned == {"ask": ask, "ark": ark}


def test_a_changed_byte_is_caught(tmp_path):
    (tmp_path / "v.bin").write_bytes(b"vector")
    digest = hashlib.sha256(b"vector").hexdigest()
    record = tmp_path / "PROVENANCE.md"
    record.write_text(f"# x\n\n    {digest}  v.bin\n")
    assert listed(record) == {"v.bin": digest}
    (tmp_path / "v.bin").write_bytes(b"vectoR")
    assert hashlib.sha256((tmp_path / "v.bin").read_bytes()).hexdigest() != listed(record)["v.bin"]
