"""``attestcall verify``: the command-line face of attestcall.verify()."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attestcall.cli import read_nonce
from attestcall.errors import AttestcallError, UsageError
from attestcall.tees import Tee, registry
from attestcall.verifier.api import technology_named, verify
from attestcall.verifier.detect import detect
from attestcall.verifier.verdict import Verdict

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2


def _collateral_options() -> list[str]:
    """Every collateral option ``verify`` has (each TEE's file and service options); each
    TEE says which of them it takes."""
    return [*registry().collateral_file_options(), *registry().collateral_url_options()]


def _read_evidence(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None


def _given(args: argparse.Namespace, tee: Tee) -> tuple[Any, str | None]:
    """The collateral the user gave for ``tee`` (a file, or a service URL), refusing the
    options that feed another TEE."""
    file_option, url_option = tee.collateral_options or (None, None)
    file_value = url_value = None
    for option in _collateral_options():
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        if option == file_option:
            file_value = value
        elif option == url_option:
            url_value = value
        else:
            mine = " or ".join(o for o in (file_option, url_option) if o) or "nothing"
            raise UsageError(f"{option} is not for {tee.title} evidence; it takes {mine}")
    if file_value is not None and url_value is not None:
        raise UsageError(f"give {file_option} or {url_option}, not both")
    return (Path(file_value) if file_value is not None else None), url_value


def _say(line: str) -> None:
    print(f"attestcall: {line}", file=sys.stderr, flush=True)


def run_collateral(args: argparse.Namespace, write: Callable[[str, bytes], None]) -> int:
    """``attestcall collateral``: exit 0 when written, 2 when it cannot be had."""
    from attestcall.verifier.collateral import default_service, offline_by_default, service_url

    try:
        evidence = _read_evidence(args.evidence)
        tee = technology_named(args.tech) if args.tech else detect(evidence)
        if tee.collateral_document is None:
            raise UsageError(f"{tee.title or tee.label} evidence needs no collateral")
        url_option = tee.collateral_options[1] if tee.collateral_options else None
        for option in ("--pccs", "--kds"):
            if getattr(args, option.lstrip("-")) is not None and option != url_option:
                raise UsageError(f"{option} is not for {tee.title} evidence")
        url = service_url(tee, None, args.pccs, args.kds)
        offline = args.offline or (url is None and offline_by_default())
        if url is None and not offline:
            url = default_service(tee)
        if offline:
            url = None
        simulated = tee.simulated_evidence is not None and tee.simulated_evidence(evidence)
        if url is not None and not simulated and not args.quiet:
            what = tee.collateral_service[2] if tee.collateral_service else "collateral"
            _say(f"fetching {what} from {url}")
        data = tee.collateral_document(evidence, url)
        write(args.output, data)
    except AttestcallError as exc:
        print(f"attestcall collateral: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.output != "-" and not args.quiet:
        print(f"{tee.title or tee.label} collateral written to {args.output}", file=sys.stderr)
    return 0


def _one_line(verdict: Verdict) -> str:
    tee = registry().get(verdict.technology)
    what = tee.title or tee.label
    tcb = f", TCB status {verdict.tcb_status}" if verdict.tcb_status else ""
    advisories = f" ({', '.join(verdict.advisories)})" if verdict.advisories else ""
    simulated = " [SIMULATED]" if verdict.simulated else ""
    if verdict.accepted:
        return f"accepted: {what}{simulated}{tcb}{advisories}"
    return f"rejected: {what}{simulated}: " + "; ".join(verdict.reasons)


def _ear(args: argparse.Namespace, verdict: Verdict, nonce: bytes | None) -> str:
    """The verdict as the EAR claims-set the attestation service would sign (issued at the
    instant verified at, echoing --nonce, under --policy)."""
    from attestcall import ear
    from attestcall.verifier.detect import parse_instant
    from attestcall.verifier.policy import Policy

    policy_bytes = Path(args.policy).read_bytes() if args.policy else None
    claims = ear.claims_set(verdict, issued_at=parse_instant(args.at), nonce=nonce,
                            policy=Policy.from_bytes(policy_bytes), policy_bytes=policy_bytes)
    return json.dumps(claims, indent=2, sort_keys=True, ensure_ascii=False)


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 accepted, 1 rejected, 2 unusable input; with --json one object on stdout,
    with --ear the EAR claims-set."""
    try:
        if args.json and args.ear:
            raise UsageError("give --json or --ear, not both")
        nonce = (read_nonce(args.nonce, stdin_taken=args.evidence == "-")
                 if args.nonce is not None else None)
        evidence = _read_evidence(args.evidence)
        tee = technology_named(args.tech) if args.tech else detect(evidence)
        given, url = _given(args, tee)
        crl = getattr(args, "crl", None)
        if crl is not None and tee.revocation_option != "--crl":
            raise UsageError(f"--crl is not for {tee.title} evidence")
        verdict = verify(
            evidence,
            technology=tee.name,
            collateral=given,
            collateral_url=url,
            at=args.at,
            nonce=nonce,
            policy=Path(args.policy) if args.policy is not None else None,
            trust_simulated=args.trust_simulated,
            crl=Path(crl) if crl is not None else None,
            offline=True if args.offline else None,
            progress=None if args.quiet else _say,
        )
        report = _ear(args, verdict, nonce) if args.ear else None
    except OSError as exc:  # the policy file went away between verify and reading it
        print(f"attestcall verify: cannot read {args.policy}: {exc.strerror}", file=sys.stderr)
        return EXIT_UNUSABLE
    except AttestcallError as exc:
        if args.json:
            print(json.dumps({"accepted": False, "error": str(exc)}))
        print(f"attestcall verify: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if report is not None:
        print(report)
    elif args.json:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        print(_one_line(verdict))
    return EXIT_ACCEPTED if verdict.accepted else EXIT_REJECTED
