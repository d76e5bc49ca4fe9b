"""attestcall: one system call, get_attestation (0xEA01), for confidential workloads.

``attestcall.verify(evidence, ...)`` is the tenant's verifier (see attestcall.verifier);
it and its types load on first use, so a payload importing ``attestcall.guest`` does not
pay for the verifier's imports."""

from typing import Any

from attestcall.abi import SYS_GET_ATTESTATION, Technology

__all__ = [
    "SYS_GET_ATTESTATION",
    "AttestcallError",
    "CollateralError",
    "EvidenceError",
    "PolicyError",
    "Technology",
    "UsageError",
    "Verdict",
    "Verifier",
    "verify",
]
__version__ = "0.1.0"

_LAZY = {
    "verify": "attestcall.verifier.api",
    "Verifier": "attestcall.verifier.api",
    "Verdict": "attestcall.verifier.verdict",
    "AttestcallError": "attestcall.errors",
    "EvidenceError": "attestcall.errors",
    "CollateralError": "attestcall.errors",
    "PolicyError": "attestcall.errors",
    "UsageError": "attestcall.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attestcall' has no attribute {name!r}")
