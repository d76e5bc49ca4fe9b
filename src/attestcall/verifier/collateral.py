"""Where a verification's collateral comes from when the caller names none.

In order: what the caller gave (a file, bytes, an object, a service URL); for evidence
whose own chain ends at a simulated root, this machine's simulators' collateral (never
fetched: a simulated quote's collateral exists only here); else the TEE's default
service (``Tee.collateral_service``: Intel's PCS, AMD's KDS), overridable by its
environment variable, unless the caller is offline. Evidence that carries its own
certificates (an SNP report whose certificate table has its key) still gets its
revocation lists from that service when its TEE checks revocation (``revocation_option``);
one that needs nothing at all gets no service. No technology is named here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from attestcall.errors import CollateralError
from attestcall.tees import Tee

OFFLINE_ENV = "ATTESTCALL_OFFLINE"


def offline_by_default() -> bool:
    """``$ATTESTCALL_OFFLINE`` is set to something other than "", "0" or "no"."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "no", "false")


@dataclass(frozen=True)
class Choice:
    """What the appraisal gets: ``value`` (a file, object, ...) or ``url`` (a service);
    ``fetching`` says what is fetched from where, when the service was chosen here or
    named by the caller."""

    value: Any
    url: str | None
    fetching: str | None = None


def service_url(tee: Tee, url: str | None, pccs: str | None, kds: str | None) -> str | None:
    """The service the caller named for ``tee``: ``url``, else the one of ``pccs`` /
    ``kds`` that feeds this TEE (the other is ignored: one Verifier serves every TEE)."""
    if url is not None:
        return url
    option = tee.collateral_options[1] if tee.collateral_options else None
    return {"--pccs": pccs, "--kds": kds}.get(option or "")


def default_service(tee: Tee) -> str | None:
    if tee.collateral_service is None:
        return None
    env, url, _ = tee.collateral_service
    return os.environ.get(env) or url


def choose(tee: Tee, evidence: bytes, value: Any, url: str | None, *,
           offline: bool = False) -> Choice:
    """The collateral for ``evidence`` (module documentation). :class:`CollateralError`
    for simulated evidence on a machine without that simulator."""
    what = tee.collateral_service[2] if tee.collateral_service else "collateral"
    if value is not None:
        return Choice(value, None)
    if url is not None:
        return Choice(None, url, f"{what} from {url}")
    if tee.simulated_evidence is not None and tee.simulated_evidence(evidence):
        if tee.simulated_collateral is None or not (tee.simulated_roots and
                                                    tee.simulated_roots()):
            raise CollateralError(
                f"the {tee.title or tee.label} is simulated (its chain ends at a SIMULATED "
                "root), and this machine has no simulated platform whose collateral could "
                "verify it")
        return Choice(tee.simulated_collateral(evidence), None)
    url = None if offline else default_service(tee)
    if url is None:
        return Choice(None, None)
    if tee.needs_collateral is not None and not tee.needs_collateral(evidence):
        if tee.revocation_option is None:
            return Choice(None, None)
        return Choice(None, url, f"revocation lists from {url}")
    return Choice(None, url, f"{what} from {url}")

