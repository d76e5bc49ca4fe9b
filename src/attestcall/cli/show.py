"""``attestcall show``: the command-line face of :func:`attestcall.show.show`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attestcall.errors import AttestcallError, UsageError

EXIT_OK, EXIT_UNUSABLE = 0, 2


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    show = commands.add_parser(
        "show",
        help="decode evidence, a keep's or service's certificate or a CSR, without verifying",
        description="Print what FILE holds, field by field with the specifications' names, "
        "WITHOUT verifying anything: an SGX quote v3, a TDX quote v4/v5, an SEV-SNP report "
        "(with its certificate table), an SEV launch secret (algorithm and public-key "
        "fingerprint only), a PCK or VCEK/VLEK certificate, a keep's certificate (its "
        "evidence and whether it is bound to the key), an attestation-service certificate "
        "(its result), a CSR. Raw, hex, base64 and PEM are recognised. Exit status: 0 "
        "shown, 2 unusable input.",
    )
    show.add_argument("file", metavar="FILE", help="the file, or - for stdin")
    show.add_argument("--json", action="store_true",
                      help="print one JSON object (its keys per kind: see the README)")


def run_show(args: argparse.Namespace) -> int:
    from attestcall.show import render, show

    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                data = Path(args.file).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
        tree = show(data)
    except AttestcallError as exc:
        print(f"attestcall show: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.json:
        print(json.dumps(tree, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render(tree))
    return EXIT_OK
