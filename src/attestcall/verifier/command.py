"""``attestcall verify``: the command-line face of attestcall.verify()."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attestcall.errors import AttestcallError, UsageError
from attestcall.verifier.api import verify
from attestcall.verifier.detect import detect
from attestcall.verifier.verdict import Verdict

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2


def _read_evidence(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None


def _collateral(args: argparse.Namespace, evidence: bytes) -> Any:
    if args.collateral and args.pccs:
        raise UsageError("give --collateral or --pccs, not both")
    if args.collateral:
        return Path(args.collateral)
    if args.pccs:
        from attestcall.intel.pcs import fetch_collateral

        return fetch_collateral(args.pccs, evidence)
    return None


def _certs(args: argparse.Namespace, evidence: bytes) -> Any:
    if args.certs and args.kds:
        raise UsageError("give --certs or --kds, not both")
    if args.certs:
        return Path(args.certs)
    if args.kds:
        from attestcall.amd.kds import fetch_vcek

        return fetch_vcek(args.kds, evidence)
    return None


def _one_line(verdict: Verdict) -> str:
    what = {"sgx": "SGX quote", "tdx": "TDX quote", "snp": "SEV-SNP report"}[verdict.technology]
    tcb = f", TCB status {verdict.tcb_status}" if verdict.tcb_status else ""
    advisories = f" ({', '.join(verdict.advisories)})" if verdict.advisories else ""
    simulated = " [SIMULATED]" if verdict.simulated else ""
    if verdict.accepted:
        return f"accepted: {what}{simulated}{tcb}{advisories}"
    return f"rejected: {what}{simulated}: " + "; ".join(verdict.reasons)


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 accepted, 1 rejected, 2 unusable input; with --json one object on stdout."""
    try:
        evidence = _read_evidence(args.evidence)
        tech = args.tech or detect(evidence)
        if tech == "snp" and (args.collateral or args.pccs):
            raise UsageError("--collateral and --pccs are for Intel evidence; SNP takes "
                             "--certs or --kds")
        if tech != "snp" and (args.certs or args.kds):
            raise UsageError("--certs and --kds are for SEV-SNP evidence; Intel takes "
                             "--collateral or --pccs")
        verdict = verify(
            evidence,
            technology=tech,
            collateral=_collateral(args, evidence) if tech != "snp" else None,
            certs=_certs(args, evidence) if tech == "snp" else None,
            at=args.at,
            nonce=args.nonce,
            policy=args.policy,
            trust_simulated=args.trust_simulated,
        )
    except AttestcallError as exc:
        if args.json:
            print(json.dumps({"accepted": False, "error": str(exc)}))
        print(f"attestcall verify: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.json:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        print(_one_line(verdict))
    return EXIT_ACCEPTED if verdict.accepted else EXIT_REJECTED
