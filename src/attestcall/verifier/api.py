"""``attestcall.verify()``: evidence in, a Verdict out — the same decision as the command."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from attestcall.appraisal import Appraisal
from attestcall.errors import CollateralError, UsageError
from attestcall.verifier.detect import TECHNOLOGIES, detect, parse_instant
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict

NONCE_SIZE = 64


def verify(
    evidence: bytes,
    *,
    technology: str | None = None,
    collateral: Any = None,
    certs: bytes | str | Path | None = None,
    at: dt.datetime | int | float | str | None = None,
    nonce: bytes | None = None,
    policy: Policy | Mapping[str, Any] | str | Path | None = None,
    trust_simulated: bool = False,
) -> Verdict:
    """Decide whether to trust ``evidence`` (what get_attestation returned).

    ``collateral`` (Intel): a path, JSON text or dict in the QuoteCollateralV3 field names,
    or a loaded Collateral. ``certs`` (SNP): bytes or a path of a DER/PEM certificate file or
    a certificate table. ``at``: when to verify (default now). ``nonce``: the 64 bytes the
    report data must equal. ``policy``: a path, mapping or Policy (default policy if None).

    Raises EvidenceError / CollateralError / PolicyError / UsageError for unusable input;
    every reason to distrust usable evidence is in ``Verdict.reasons``."""
    evidence = bytes(evidence)
    if technology is None:
        technology = detect(evidence)
    elif technology not in TECHNOLOGIES:
        raise UsageError(f"unknown technology {technology!r}; choose one of sgx, tdx, snp")
    if nonce is not None and len(nonce) != NONCE_SIZE:
        raise UsageError(f"the nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    instant = parse_instant(at)
    rules = Policy.load(policy)

    if technology == "snp":
        appraisal = _appraise_snp(evidence, certs, instant, trust_simulated)
    else:
        appraisal = _appraise_intel(technology, evidence, collateral, instant, trust_simulated)

    reasons = list(appraisal.problems)
    if nonce is not None and appraisal.report_data != nonce:
        reasons.append("the report data does not equal the nonce")
    if not appraisal.problems:  # policy speaks only about evidence proven genuine
        reasons += rules.check(appraisal)
    return Verdict(
        accepted=not reasons,
        technology=appraisal.technology,
        tcb_status=appraisal.tcb_status,
        advisories=list(appraisal.advisories),
        claims=appraisal.claims,
        reasons=reasons,
        simulated=appraisal.simulated,
    )


def _appraise_intel(
    technology: str, quote: bytes, collateral: Any, at: dt.datetime, trust_simulated: bool
) -> Appraisal:
    from attestcall.intel.collateral import Collateral
    from attestcall.intel.roots import intel_root
    from attestcall.intel.verify import appraise_sgx, appraise_tdx

    if collateral is None:
        raise CollateralError(
            f"{technology.upper()} evidence needs Intel collateral: pass --collateral FILE "
            "or --pccs URL"
        )
    if not isinstance(collateral, Collateral):
        collateral = Collateral.load(collateral)
    roots = [intel_root(), *(_simulated_roots("sgx") if trust_simulated else [])]
    appraise = appraise_sgx if technology == "sgx" else appraise_tdx
    return appraise(quote, collateral=collateral, at=at, roots=roots)


def _appraise_snp(
    evidence: bytes, certs: bytes | str | Path | None, at: dt.datetime, trust_simulated: bool
) -> Appraisal:
    from attestcall.amd.roots import amd_arks
    from attestcall.amd.verify import appraise_snp

    if certs is not None and not isinstance(certs, bytes | bytearray):
        try:
            certs = Path(certs).read_bytes()
        except OSError as exc:
            raise CollateralError(f"cannot read certificates {certs}: {exc.strerror}") from None
    arks = [*amd_arks(), *(_simulated_roots("snp") if trust_simulated else [])]
    return appraise_snp(evidence, certs=certs, at=at, arks=arks)


def _simulated_roots(platform: str) -> list[x509.Certificate]:
    """The roots of this machine's simulated platforms, if they exist (never created here).

    ``sgx`` (also TDX's): the simulated Intel SGX Root CA; ``snp``: the simulated ARKs."""
    from attestcall.simstate import sim_home

    folder = sim_home() / platform
    names = {"sgx": ["root_ca.pem"], "snp": sorted(p.name for p in folder.glob("ark*.pem"))}
    roots = []
    for name in names.get(platform, []):
        try:
            roots.append(x509.load_pem_x509_certificate((folder / name).read_bytes()))
        except (OSError, ValueError):
            continue
    return roots
