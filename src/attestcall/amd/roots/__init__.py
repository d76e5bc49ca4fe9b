"""AMD's pinned root keys (ARK) and signing keys (ASK) for Milan, Genoa and Turin.

Shipped as package data beside this module (``amd_{ark,ask}_{product}.pem``; provenance
and digests in PROVENANCE.md): production AMD keys, RSA-4096, RSASSA-PSS SHA-384. The
ASKs let a chain be checked offline when a certificate table carries only the VCEK.
Loaded once.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from cryptography import x509

from attestcall.amd.formats.certs import load_pem_certificates

PRODUCT_FILES = ("milan", "genoa", "turin")


def _load(kind: str) -> tuple[x509.Certificate, ...]:
    folder = resources.files(__name__)
    out: list[x509.Certificate] = []
    for product in PRODUCT_FILES:
        data = folder.joinpath(f"amd_{kind}_{product}.pem").read_bytes()
        out.extend(load_pem_certificates(data))
    return tuple(out)


@cache
def _arks() -> tuple[x509.Certificate, ...]:
    return _load("ark")


@cache
def _asks() -> tuple[x509.Certificate, ...]:
    return _load("ask")


def amd_arks() -> list[x509.Certificate]:
    """The pinned ARKs (Milan, Genoa, Turin)."""
    return list(_arks())


def amd_asks() -> list[x509.Certificate]:
    """The ASKs matching the pinned ARKs, for chains whose table lacks them."""
    return list(_asks())
