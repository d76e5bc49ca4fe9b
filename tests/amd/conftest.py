from __future__ import annotations

import pytest
from cryptography import x509

from attestcall.amd.formats import report as snp
from attestcall.amd.formats.certs import load_pem_certificates
from attestcall.amd.verify.appraise import clear_caches
from tests import paths

DATA = paths.DATA / "amd"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def ask_ark(product: str) -> tuple[x509.Certificate, x509.Certificate]:
    ask, ark = load_pem_certificates(read(f"ask_ark_{product}.pem"))
    return ask, ark


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def milan_report() -> bytes:
    return read("milan_report_v2.bin")


@pytest.fixture
def milan_vcek() -> bytes:
    return read("milan_report_v2.vcek.der")


@pytest.fixture
def base_report() -> snp.Report:
    return snp.parse(read("milan_report_v2.bin"))
