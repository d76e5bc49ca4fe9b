"""``attestcall.verify()``: evidence in, a Verdict out — the same decision as the command.

No technology is named here: the registered TEE that recognises the evidence (or the one
named by ``technology``) appraises it (:mod:`attestcall.tees`), then the policy speaks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attestcall.diskcache import default_directory
from attestcall.errors import UsageError
from attestcall.schema import Reason
from attestcall.tees import Tee, registry
from attestcall.verifier.collateral import choose, offline_by_default, service_url
from attestcall.verifier.detect import detect, parse_instant
from attestcall.verifier.inputs import crl_input, verify_arguments
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
    pccs: str | None = None,
    kds: str | None = None,
    offline: bool | None = None,
    progress: Callable[[str], None] | None = None,
    roots: Sequence[Any] = (),
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
    instant = parse_instant(at) if at is not None else None
    rules = Policy.load(checked.policy)

    offline = offline_by_default() if offline is None else offline
    choice = choose(tee, evidence, given, service_url(tee, collateral_url, pccs, kds),
                    offline=offline)
    given, collateral_url = choice.value, choice.url
    if choice.fetching is not None and progress is not None:
        progress(f"fetching {choice.fetching} (cached in {default_directory()})")
    if instant is None:  # now, after the collateral: a simulator's is issued "now"
        instant = parse_instant(None)
    if crl is not None and (tee.revocation_option is None or tee.collateral_source is None):
        raise UsageError(f"a separate CRL is not for {tee.title or tee.name} evidence")
    if tee.collateral_source is None:
        source = given
    elif crl is not None:
        source = tee.collateral_source(evidence, given, collateral_url, crl=crl_input(crl))
    else:
        source = tee.collateral_source(evidence, given, collateral_url)
    trusted = [*(tee.simulated_roots() if trust_simulated and tee.simulated_roots else []),
               *roots]
    assert tee.appraise is not None  # technology_named / detect return verifiable TEEs
    appraisal = tee.appraise(evidence, source, instant, trusted)

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


class Verifier:
    """Verification with settings fixed once, for a service that verifies many pieces of
    evidence: ``Verifier(policy=..., collateral_source=..., roots=...).verify(evidence,
    nonce=...)`` decides as :func:`verify` with the same arguments would.

    ``policy`` (a path, mapping or Policy) is loaded once. ``collateral_source`` is the
    collateral every verification gets (a path, bytes, str or loaded object; an Intel
    collateral source; SNP certificates or a certificate source), ``pccs`` / ``kds`` the
    services (each feeds its own TEE), ``offline`` forbids the default ones; ``roots``
    are extra trusted roots. Collateral given as a path, bytes or str is parsed once per
    content, so a warm verification costs what the internal path costs. Thread-safe:
    holds no state that a verification changes."""

    def __init__(
        self,
        *,
        policy: Policy | Mapping[str, Any] | str | Path | None = None,
        collateral_source: Any = None,
        roots: Sequence[Any] = (),
        pccs: str | None = None,
        kds: str | None = None,
        offline: bool | None = None,
        trust_simulated: bool = False,
        crl: bytes | str | Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.policy = Policy.load(policy)
        self.collateral_source = collateral_source
        self.roots = tuple(roots)
        self.pccs, self.kds, self.offline = pccs, kds, offline
        self.trust_simulated = trust_simulated
        self.crl = crl
        self.progress = progress

    def verify(self, evidence: bytes, *, nonce: bytes | None = None,
               at: dt.datetime | int | float | str | None = None,
               technology: str | None = None) -> Verdict:
        """The verdict on ``evidence`` (see :func:`verify`)."""
        return verify(evidence, technology=technology, collateral=self.collateral_source,
                      at=at, nonce=nonce, policy=self.policy,
                      trust_simulated=self.trust_simulated, crl=self.crl, pccs=self.pccs,
                      kds=self.kds, offline=self.offline, progress=self.progress,
                      roots=self.roots)
