"""``attestcall.verify()``: evidence in, a Verdict out — the same decision as the command.

No technology is named here: the registered TEE that recognises the evidence (or the one
named by ``technology``) appraises it (:mod:`attestcall.tees`), then the policy speaks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attestcall.errors import UsageError
from attestcall.schema import Reason
from attestcall.tees import Tee, registry
from attestcall.verifier.detect import detect, parse_instant
from attestcall.verifier.inputs import verify_arguments
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict


def technology_named(name: str) -> Tee:
    """The verifiable TEE called ``name`` (``sgx``, ``tdx``, ``snp``, ...)."""
    tee = registry().by_name(name)
    if tee is None or not tee.verifiable:
        known = ", ".join(t.name for t in registry().verifiable())
        raise UsageError(f"unknown technology {name!r}; choose one of {known}")
    return tee


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
    collateral_url: str | None = None,
    crl: bytes | str | Path | None = None,
) -> Verdict:
    """Decide whether to trust ``evidence`` (what get_attestation returned).

    ``collateral`` (Intel): a path, JSON text or dict in the QuoteCollateralV3 field names,
    or a loaded Collateral. ``certs`` (SNP): bytes or a path of a DER/PEM certificate file or
    a certificate table. Paths are ``os.PathLike``; ``str`` and ``bytes`` are content (see
    :mod:`attestcall.verifier.inputs` for the deprecated str-as-path case). (Both are handed
    to the TEE's collateral source; ``collateral_url`` is its service, a PCS/PCCS or KDS.)
    ``at``: when to verify (default now). ``nonce``: the 64 bytes the report data must equal.
    ``policy``: a path, TOML text, mapping or Policy (default policy if None).
    ``trust_simulated``: also trust this machine's simulated roots.

    Raises EvidenceError / CollateralError / PolicyError / UsageError for unusable input;
    every reason to distrust usable evidence is in ``Verdict.reasons``."""
    checked = verify_arguments(evidence, nonce=nonce, policy=policy, collateral=collateral,
                               certs=certs, technology=technology,
                               collateral_url=collateral_url, trust_simulated=trust_simulated)
    evidence, nonce, given = checked.evidence, checked.nonce, checked.collateral
    tee = detect(evidence) if technology is None else technology_named(technology)
    instant = parse_instant(at)
    rules = Policy.load(checked.policy)

    if crl is not None and (tee.revocation_option is None or tee.collateral_source is None):
        raise UsageError(f"a separate CRL is not for {tee.title or tee.name} evidence")
    if tee.collateral_source is None:
        source = given
    elif crl is not None:
        source = tee.collateral_source(evidence, given, collateral_url, crl=crl)
    else:
        source = tee.collateral_source(evidence, given, collateral_url)
    roots = tee.simulated_roots() if trust_simulated and tee.simulated_roots else []
    assert tee.appraise is not None  # technology_named / detect return verifiable TEEs
    appraisal = tee.appraise(evidence, source, instant, roots)

    reasons = list(appraisal.problems)
    if nonce is not None and appraisal.report_data != nonce:
        reasons.append(Reason("the report data does not equal the nonce", "nonce"))
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
        debug=appraisal.debug,
        problems=list(appraisal.problems),
    )
