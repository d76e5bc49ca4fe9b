"""The ``attestcall`` command line: thin glue over the keep, the front ends and the simulators."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attestcall import __version__
from attestcall.abi import NONCE_SIZE, BufferMemory, get_attestation
from attestcall.errors import AttestcallError, PayloadError, UsageError
from attestcall.keep.platforms import open_keep, resolve_tee, tee_names
from attestcall.tees import Option, registry

KEY_TYPES = ("p256", "p384", "ed25519", "rsa3072", "mldsa44", "mldsa65", "mldsa87")

WASM_SUFFIXES = (".wasm", ".wat")
EXIT_USAGE = 2
EXIT_PAYLOAD = 127
EXIT_INTERNAL = 70
_COMMAND_PREFIX = re.compile(r"(attestcall(?: [a-z-]+)*): ")


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with a REMAINDER positional (a payload's arguments) shown as the
    optional ``[ARGS ...]`` it is, not as a bare ``...``."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs == argparse.REMAINDER:
            return f"[{self._metavar_formatter(action, default_metavar)(1)[0]} ...]"
        return super()._format_args(action, default_metavar)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every error is one line from main()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _usage(self.prog, message)


def _usage(prog: str, message: str) -> UsageError:
    """A UsageError that main() prints as ``PROG: error: MESSAGE``."""
    error = UsageError(message)
    error.prog = prog  # type: ignore[attr-defined]
    return error


def _usage_line(exc: UsageError) -> str:
    """``PROG: error: MESSAGE``, once: a message that names its command already (``attestcall
    service: ...``) gives that command as PROG."""
    prog, message = getattr(exc, "prog", None), str(exc)
    named = _COMMAND_PREFIX.match(message) if prog is None else None
    if named:
        prog, message = named[1], message[named.end():]
    return f"{prog or 'attestcall'}: error: {message}"


def _optional_rest(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:
    """The payload's arguments: everything after the payload, none at all included."""
    action = parser.add_argument("args", nargs=argparse.REMAINDER, metavar=metavar, help=help)
    action.required = False  # argparse lists a REMAINDER as required when nothing precedes it


def _hex_bytes(size: int | tuple[int, ...], what: str):
    """An argparse type: hex digits for ``size`` bytes (or any of several sizes)."""
    sizes = (size,) if isinstance(size, int) else size

    def parse(text: str) -> bytes:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be hex digits") from None
        if len(value) not in sizes:
            wanted = " or ".join(f"{n * 2}" for n in sizes)
            raise argparse.ArgumentTypeError(
                f"{what} must be {wanted} hex digits ({' or '.join(map(str, sizes))} bytes), "
                f"got {len(text)}"
            )
        return value

    return parse


def _uint(bits: int, limit_text: str):
    """An argparse type: an unsigned number of ``bits`` bits (0x… allowed)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 <= value < 1 << bits:
            raise argparse.ArgumentTypeError(f"{value} is outside 0..{limit_text}")
        return value

    return parse


_u16 = _uint(16, "65535")
_u64 = _uint(64, "2^64-1")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)



def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _option_type(option: Option) -> dict[str, Any]:
    """argparse keywords for a TEE plugin's keep option."""
    flag = option.flags[0]
    if option.kind == "flag":
        return {"action": "store_true", "default": None}
    if option.kind == "u16":
        return {"type": _u16, "metavar": "N"}
    if option.kind == "u64":
        return {"type": _u64, "metavar": "N"}
    if option.kind.startswith("hex:"):
        sizes = tuple(int(n) for n in option.kind[4:].split("|"))
        return {"type": _hex_bytes(sizes, flag), "metavar": "HEX"}
    if option.kind == "choice":
        kind = type(option.choices[0]) if option.choices else str
        return {"type": kind, "choices": option.choices}
    raise ValueError(f"{flag}: unknown option kind {option.kind!r}")


def _add_keep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tee",
        choices=tee_names(),
        default=os.environ.get("ATTESTCALL_TEE", "auto"),
        help="the TEE to answer get_attestation with: 'auto' (real hardware when found, else "
        "'none'; the default, or $ATTESTCALL_TEE), 'none' (technology 0), a simulator "
        "(sgx-sim, snp-sim, tdx-sim, sev-sim, ...) or a real interface",
    )
    parser.add_argument("--debug", "--debug-enclave", dest="debug", action="store_true",
                        help="a debug keep: the simulated enclave's, guest's or TD's DEBUG bit "
                        "(off by default; verifiers reject it)")
    for tee in registry().tees:
        if not tee.keep_options:
            continue
        names = ", ".join(f"--tee {b.name}" for b in tee.backends if b.simulated)
        group = parser.add_argument_group(f"simulated {tee.label} ({names})")
        for option in tee.keep_options:
            group.add_argument(*option.flags, dest=_dest(option), help=option.help,
                               **_option_type(option))
    parser.add_argument("--host-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                        help="how long the shim waits for the host (default 10)")


def _dest(option: Option) -> str:
    return "keep_" + option.key.replace(".", "__")


def _add_tee_file_options(parser: argparse.ArgumentParser) -> None:
    """The collateral file options of registered TEEs (``Tee.collateral_options[0]``) that
    ``parser`` does not have yet, e.g. a plugin's trust-anchor file, each with the help its
    record gives (``Tee.collateral_help``)."""
    have = {flag for action in parser._actions for flag in action.option_strings}
    for option in registry().collateral_file_options():
        if option in have:
            continue
        have.add(option)
        tee = next(t for t in registry().tees
                   if t.collateral_options and t.collateral_options[0] == option)
        parser.add_argument(option, metavar="FILE", help=tee.collateral_help or
                            f"collateral for {tee.title or tee.label} evidence")


def _collateral_simulators() -> list[str]:
    """The simulated keeps whose TEE makes collateral (``attestcall sim collateral``)."""
    return [b.name for t in registry().tees if t.simulated_collateral
            for b in t.backends if b.simulated]


def _build_parser(command: str | None = None) -> _Parser:
    """The parser. Only the sub-command ``command`` (None: every one) gets the options that
    come from the TEE registry, so ``attestcall --help`` and the commands that need no TEE
    never load it."""

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = _Parser(
        prog="attestcall",
        description="Run payloads in a keep that answers get_attestation (syscall 0xEA01), "
        "and manage the simulated TEE platforms.",
    )
    parser.add_argument("--version", action="version", version=f"attestcall {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a native x86-64 program or a WebAssembly module in a keep",
        description="Run PROGRAM in a keep. A .wasm or .wat PROGRAM runs in wasmtime with WASI "
        "and the import attestation.get_attestation; anything else is started as a native "
        "x86-64 Linux program whose syscall 0xEA01 the keep answers. The exit status is the "
        "payload's (128+N when it dies of signal N).",
    )
    if wanted("run"):
        _add_keep_options(run)
    run.add_argument("program", metavar="PROGRAM", help="the payload to run")
    _optional_rest(run, "ARGS", "arguments for the payload (optional)")

    attest = commands.add_parser(
        "attest",
        help="produce evidence once, through the same shim and host",
        description="Ask the keep's get_attestation once with NONCE and write the evidence "
        "to FILE ('-' for standard output).",
    )
    if wanted("attest"):
        _add_keep_options(attest)
    attest.add_argument("--nonce", required=True, metavar="NONCE",
                        help="the 64-byte nonce: 128 hex digits, @FILE or - (standard input) "
                        "holding 64 raw bytes or 128 hex digits, or 'random' (printed)")
    attest.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the evidence ('-' for standard output)")
    attest.add_argument("--payload", metavar="FILE",
                        help="measure this file as the payload (default: an empty payload)")

    sim = commands.add_parser("sim", help="show or reset the simulated platforms' state",
                              description="The simulated platforms keep their roots, keys and "
                              "TCB levels in $ATTESTCALL_HOME, else $XDG_DATA_HOME/attestcall.")
    sim_commands = sim.add_subparsers(dest="sim_command", metavar="ACTION", parser_class=_Parser)
    sim_commands.add_parser("show", help="print the simulated platforms' state")
    sim_commands.add_parser("reset", help="recreate the simulated platforms' state (new keys)")
    digest = sim_commands.add_parser(
        "sev-digest",
        help="print the SEV launch digest a tenant's policy should list for a keep",
        description="The launch digest (hex) the simulated SEV firmware measures for a keep "
        "of this attestcall version: the shim image, plus PAYLOAD when given (`keep serve` "
        "launches with no payload). Put it in the policy's [sev] launch_digest.",
    )
    digest.add_argument("--payload", metavar="FILE", help="the payload the keep launches with")
    collateral = sim_commands.add_parser(
        "collateral",
        help="write the simulated SGX platform's collateral (TCB info, QE identity, CRLs)",
        description="Write the collateral a verifier needs for simulated SGX quotes: TCB info, "
        "QE identity and CRLs signed by the simulated chain, as JSON with the "
        "QuoteCollateralV3 field names (the format `attestcall verify --collateral` reads).",
    )
    collateral.add_argument("--tee", choices=_collateral_simulators() if wanted("sim") else None,
                            default="sgx-sim",
                            help="the simulated platform (default sgx-sim)")
    collateral.add_argument("-o", "--output", required=True, metavar="FILE",
                            help="where to write the JSON ('-' for standard output)")

    keep = commands.add_parser("keep", help="run a keep as a service tenants deploy to",
                               description="The keep as a network service.")
    keep_commands = keep.add_subparsers(dest="keep_command", metavar="ACTION",
                                        parser_class=_Parser)
    serve = keep_commands.add_parser(
        "serve",
        help="serve tenants over TLS 1.3: prove the keep, then run their Wasm workloads",
        description="Open a keep, make its TLS identity (a key generated inside the keep, a "
        "certificate carrying its evidence bound to that key), and run each tenant's "
        "WebAssembly workload, streaming its output back. See the README for the protocol.",
    )
    if wanted("keep"):
        _add_keep_options(serve)
    serve.add_argument("--listen", type=_host_port, default=("127.0.0.1", 7443),
                       metavar="HOST:PORT", help="where to listen (default 127.0.0.1:7443)")
    serve.add_argument("--once", action="store_true", help="serve one tenant, then exit")
    serve.add_argument("--service", metavar="URL",
                       help="get the keep's TLS certificate from this attestation service "
                       "(renewed at two thirds of its lifetime); exit non-zero if it refuses "
                       "or cannot be reached. Not for pre-attestation keeps (SEV)")
    serve.add_argument("--service-ca", metavar="FILE",
                       help="trust only this CA (PEM) for the https:// service's certificate "
                       "(default: the system's trust store)")
    serve.add_argument("--key-type", choices=KEY_TYPES, metavar="TYPE",
                       help=f"the keep's TLS key ({', '.join(KEY_TYPES)}; default p256, "
                       "p384 for SNP)")

    deploy = commands.add_parser(
        "deploy",
        help="send a Wasm workload to a keep, only after the keep proved what it is",
        description="Connect to a keep over TLS 1.3, verify the evidence in its certificate "
        "(bound to the key of this very TLS session) against the policy, and only then send "
        "WORKLOAD; stream its output and exit with its status. Exit status 125 when deploy "
        "itself fails or refuses the keep (nothing ran), 126 when the keep took the workload "
        "but gave no exit status for it; any other status is the workload's.",
    )
    deploy.add_argument("--keep", required=True, type=_host_port, metavar="HOST:PORT",
                        help="the keep's address")
    deploy.add_argument("--policy", metavar="FILE", help="policy TOML (see the README)")
    deploy.add_argument("--trust-simulated", action="store_true",
                        help="accept a keep whose evidence is signed by this machine's "
                        "simulated roots")
    deploy.add_argument("--key-type", choices=KEY_TYPES, metavar="TYPE",
                        help="require the keep's TLS key to be of this type")
    deploy.add_argument("--collateral", metavar="FILE",
                        help="Intel collateral for the keep's quote (QuoteCollateralV3 JSON, "
                        "as verify --collateral)")
    deploy.add_argument("--pccs", metavar="URL",
                        help="fetch Intel collateral for the keep's quote from a PCS/PCCS "
                        "(default: Intel's PCS, or $ATTESTCALL_PCCS_URL)")
    deploy.add_argument("--kds", metavar="URL",
                        help="fetch an SNP keep's VCEK, chain and CRL from an AMD "
                        "KDS-compatible service (default: AMD's KDS, or $ATTESTCALL_KDS_URL, "
                        "when the report's certificate table lacks the VCEK)")
    if wanted("deploy"):
        _add_tee_file_options(deploy)
    deploy.add_argument("--ca", metavar="CA.pem",
                        help="trust the keep because this attestation service CA certified "
                        "it (issued by it, valid, not revoked per its CRL), then apply the "
                        "policy to the attestation result in its certificate; no collateral")
    deploy.add_argument("--service-ca", metavar="FILE",
                        help="with --ca: trust only this CA (PEM) for the attestation "
                        "service's HTTPS when fetching the CRL from an https:// distribution "
                        "point (default: the system's trust store)")
    deploy.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr what was checked and accepted: the evidence's "
                        "technology, TCB status and measurements, or the CA that vouched")
    deploy.add_argument("--json", action="store_true",
                        help="write what was checked as one JSON object on stderr before the "
                        "workload's output, and the outcome as a last JSON line")
    deploy.add_argument("workload", metavar="WORKLOAD", help="the .wasm or .wat module")
    _optional_rest(deploy, "ARGS", "arguments for the workload (optional)")

    collect = commands.add_parser(
        "collateral",
        help="write what verifying EVIDENCE needs, for offline and air-gapped use",
        description="Write the collateral EVIDENCE needs: for an SGX or TDX quote, Intel's "
        "QuoteCollateralV3 as JSON (what verify --collateral reads; a simulated quote gets "
        "this machine's simulators'); for an SEV-SNP report, the VCEK or VLEK, the ASK or "
        "ASVK, the ARK and the ARK's CRL as PEM (what verify --certs reads). Fetched from "
        "Intel's PCS / AMD's KDS unless --pccs / --kds name another service.",
    )
    collect.add_argument("evidence", metavar="EVIDENCE", help="the evidence file, or - for stdin")
    collect.add_argument("-o", "--output", required=True, metavar="FILE",
                         help="where to write it (- for stdout)")
    collect.add_argument("--tech",
                         choices=[t.name for t in registry().verifiable()]
                         if wanted("collateral") else None,
                         help="the technology, when the bytes do not say")
    collect.add_argument("--pccs", metavar="URL", help="the PCS/PCCS v4 service (Intel)")
    collect.add_argument("--kds", metavar="URL", help="the AMD KDS-compatible service (SNP)")
    collect.add_argument("--offline", action="store_true",
                         help="fetch nothing (what the evidence itself carries, or the "
                         "simulators')")
    collect.add_argument("-q", "--quiet", action="store_true",
                         help="do not say on stderr what is fetched from where")

    verify = commands.add_parser(
        "verify",
        help="verify SGX/TDX quotes and SEV-SNP reports against vendor roots and policy",
        description="Decide whether to trust EVIDENCE (exactly what get_attestation returned). "
        "Exit status: 0 accepted, 1 rejected, 2 unusable input.",
    )
    verify.add_argument("evidence", metavar="EVIDENCE", help="the evidence file, or - for stdin")
    verify.add_argument("--tech",
                        choices=[t.name for t in registry().verifiable()] if wanted("verify")
                        else None,
                        help="the technology, when the bytes do not say")
    verify.add_argument("--collateral", metavar="FILE",
                        help="Intel collateral, JSON with QuoteCollateralV3 field names")
    verify.add_argument("--certs", metavar="FILE",
                        help="SNP certificates: DER or PEM VCEK/VLEK (+ ASK, ARK), or a "
                        "certificate table")
    verify.add_argument("--pccs", metavar="URL",
                        help="fetch Intel collateral from a PCS/PCCS v4 service (cached)")
    verify.add_argument("--kds", metavar="URL",
                        help="fetch the VCEK from an AMD KDS-compatible service (cached)")
    verify.add_argument("--offline", action="store_true",
                        help="fetch nothing: without --collateral/--pccs (Intel) or "
                        "--certs/--kds/a certificate table (SNP), collateral would come from "
                        "Intel's PCS or AMD's KDS ($ATTESTCALL_PCCS_URL, $ATTESTCALL_KDS_URL)")
    verify.add_argument("-q", "--quiet", action="store_true",
                        help="do not say on stderr what is fetched from where")
    verify.add_argument("--crl", metavar="FILE",
                        help="SNP: the ARK's CRL (DER or PEM, as KDS serves it at "
                        "/vcek/v1/PRODUCT/crl); revocation is then checked with it")
    verify.add_argument("--at", metavar="TIME",
                        help="verify at this instant: ISO 8601 UTC (2025-07-19T10:01:17Z) or "
                        "Unix seconds (default: now)")
    verify.add_argument("--nonce", metavar="NONCE",
                        help="the 64 bytes the report data must equal: 128 hex digits, or "
                        "@FILE or - (standard input) holding 64 raw bytes or 128 hex digits")
    verify.add_argument("--policy", metavar="FILE", help="policy TOML (see the README)")
    verify.add_argument("--trust-simulated", action="store_true",
                        help="accept evidence signed by this machine's simulated roots")
    if wanted("verify"):
        _add_tee_file_options(verify)
    verify.add_argument("--json", action="store_true",
                        help="print one JSON object (accepted, technology, tcb_status, "
                        "advisories, claims, reasons)")
    verify.add_argument("--ear", action="store_true",
                        help="print the result as an EAR claims-set (unsigned JSON): the "
                        "vocabulary of the attestation service's tokens and certificates")

    from attestcall.cli.show import add_parser as add_show

    add_show(commands)

    if wanted("service"):
        from attestcall.cli.service import add_parser as add_service

        add_service(commands, _host_port, _Parser)
    else:
        commands.add_parser("service", help="run the attestation service: certificates for "
                            "a fleet of keeps")

    commands.add_parser(
        "devices",
        help="show which real TEE interfaces this machine has, and why the others are unusable",
        description="Probe configfs-tsm, /dev/sev-guest and Gramine's /dev/attestation (the "
        "order --tee auto uses) and say what each offers.",
    )
    commands.add_parser("include-dir", help="print the directory holding attestcall.h",
                        description="Print the directory of attestcall.h, for "
                        "cc -I\"$(attestcall include-dir)\" app.c")
    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash, zsh or tcsh)",
        description="Print the completion script for SHELL, generated from these very "
        "options: eval \"$(attestcall completion bash)\" in ~/.bashrc, or attestcall "
        "completion zsh > ~/.zfunc/_attestcall (a directory in $fpath).")
    completion.add_argument("shell", choices=COMPLETION_SHELLS, metavar="SHELL",
                            help=", ".join(COMPLETION_SHELLS))
    return parser


COMPLETION_SHELLS = ("bash", "zsh", "tcsh")
# metavars that name a file: completed as file names
_FILE_METAVARS = {"FILE", "EVIDENCE", "WORKLOAD", "PROGRAM", "CA.pem"}


def _cmd_completion(args: argparse.Namespace) -> int:
    """The completion script shtab generates from the whole parser (every TEE's options)."""
    import shtab

    parser = _build_parser()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
            elif action.metavar in _FILE_METAVARS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=args.shell), end="")
    return 0


def _keep_options(args: argparse.Namespace) -> dict[str, Any]:
    """What open_keep takes: the options given on the command line (each simulator refuses
    another's). A key ``a.b`` goes into the mapping ``a``."""
    options: dict[str, Any] = {"timeout": args.host_timeout}
    if args.debug:
        options["debug"] = True
    for tee in registry().tees:
        for option in tee.keep_options:
            value = getattr(args, _dest(option), None)
            if value is None:
                continue
            table, _, key = option.key.rpartition(".")
            (options.setdefault(table, {}) if table else options)[key or table] = value
    return options


def _read_payload(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PayloadError(f"cannot read {path}: {exc.strerror}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    tee = resolve_tee(args.tee)
    program: str = args.program
    if program.endswith(WASM_SUFFIXES):
        from attestcall.frontends.wasm import run_wasm

        payload = _read_payload(program)
        with open_keep(tee, payload, **_keep_options(args)) as keep:
            return run_wasm(program, args.args, keep.source)

    from attestcall.frontends.native import check_program, run_native

    resolved = check_program(program)
    payload = _read_payload(resolved)
    with open_keep(tee, payload, **_keep_options(args)) as keep:
        return run_native([program, *args.args], keep.source)


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def read_nonce(text: str, *, stdin_taken: bool = False, random: bool = False) -> bytes:
    """The 64-byte nonce ``--nonce`` names: 128 hex digits; ``@FILE`` or ``-`` (standard
    input) holding 64 raw bytes or 128 hex digits (surrounding whitespace ignored); with
    ``random``, ``random`` is 64 fresh random bytes. UsageError otherwise."""
    if random and text == "random":
        return os.urandom(NONCE_SIZE)
    if text == "-" or text.startswith("@"):
        if text == "-" and stdin_taken:
            raise UsageError("--nonce -: standard input already holds the evidence")
        if text == "-":
            data = sys.stdin.buffer.read(4 * NONCE_SIZE)
        else:
            try:
                with open(text[1:], "rb") as handle:
                    data = handle.read(4 * NONCE_SIZE)
            except OSError as exc:
                raise UsageError(f"--nonce {text}: cannot read: {exc.strerror}") from None
        where = "standard input" if text == "-" else text[1:]
        if len(data) == NONCE_SIZE:
            return data
        try:
            return _hex_bytes(NONCE_SIZE, f"--nonce ({where})")(data.decode("ascii").strip())
        except (UnicodeDecodeError, argparse.ArgumentTypeError):
            raise UsageError(f"--nonce: {where} holds {len(data)} bytes, neither the nonce's "
                             f"{NONCE_SIZE} raw bytes nor {2 * NONCE_SIZE} hex digits") from None
    try:
        return _hex_bytes(NONCE_SIZE, "--nonce")(text)
    except argparse.ArgumentTypeError as exc:
        extra = ", or 'random'" if random else ""
        raise UsageError(f"{exc} (or @FILE, - for standard input{extra})") from None


def _cmd_attest(args: argparse.Namespace) -> int:
    nonce = read_nonce(args.nonce, random=True)
    tee = resolve_tee(args.tee)
    payload = _read_payload(args.payload) if args.payload else b""
    with open_keep(tee, payload, **_keep_options(args)) as keep:
        memory = BufferMemory(bytearray(NONCE_SIZE))
        memory.write(memory.base, nonce)
        query = get_attestation(0, 0, 0, 0, memory=memory, source=keep.source)
        if not query.ok:
            return _failed(-query.ret)
        memory.data.extend(bytes(max(query.ret, 1)))
        buf = memory.base + NONCE_SIZE
        outcome = get_attestation(memory.base, NONCE_SIZE, buf, max(query.ret, 1),
                                  memory=memory, source=keep.source)
        if not outcome.ok:
            return _failed(-outcome.ret)
    evidence = memory.read(buf, outcome.ret) if outcome.ret else b""
    _write_output(args.output, evidence)
    tech = outcome.technology
    name = registry().label(tech) if tech is not None else "unknown"
    where = "standard output" if args.output == "-" else args.output
    report = sys.stderr if args.output == "-" else sys.stdout
    if args.nonce == "random":
        print(f"nonce {nonce.hex()}", file=report)
    print(f"technology {tech} ({name}), {outcome.ret} bytes written to {where}", file=report)
    return 0


def _failed(code: int) -> int:
    name = errno.errorcode.get(code, str(code))
    print(f"attestcall: get_attestation failed: {name} ({os.strerror(code)})", file=sys.stderr)
    return 1


def _cmd_sim(args: argparse.Namespace) -> int:
    if args.sim_command not in ("show", "reset", "collateral", "sev-digest"):
        raise _usage("attestcall sim", "choose an action: show, reset, collateral or "
                     "sev-digest")
    if args.sim_command == "sev-digest":
        digest = registry().get("sev").launch_digest
        assert digest is not None  # the SEV record has one
        payload = _read_payload(args.payload) if args.payload else b""
        print(digest(payload).hex())
        return 0
    if args.sim_command == "collateral":
        tee = registry().backend(args.tee)[0]  # type: ignore[index]
        _write_output(args.output, tee.simulated_collateral(b"").encode())
        if args.output != "-":
            print(f"simulated {tee.label} collateral written to {args.output}")
        return 0
    from attestcall import simstate

    if args.sim_command == "show":
        print(simstate.describe())
        return 0
    if args.sim_command == "reset":
        simstate.reset()
        print(f"simulated platform state recreated in {simstate.sim_home()}")
    return 0


def _cmd_keep(args: argparse.Namespace) -> int:
    if args.keep_command != "serve":
        raise _usage("attestcall keep", "choose an action: serve")
    from attestcall.deploy.server import ServerSettings, serve

    serve(resolve_tee(args.tee), args.listen, once=args.once,
          settings=ServerSettings(key_type=args.key_type), service=args.service,
          service_ca=args.service_ca, **_keep_options(args))
    return 0


# deploy's own outcomes, on codes a workload is unlikely to use (docker run's convention);
# any other status is the workload's own
EXIT_DEPLOY_FAILED = 125  # nothing ran: bad usage or workload, unreachable or refused keep
EXIT_DEPLOY_BROKEN = 126  # the workload was sent, but the keep gave no exit status for it


def _workload_bytes(name: str) -> bytes:
    """The module a deployment sends: a .wat file compiled, else a WebAssembly binary;
    anything else is one PayloadError line saying what it is instead."""
    data = _read_payload(name)
    if name.endswith(".wat"):
        try:
            import wasmtime

            return wasmtime.wat2wasm(data.decode())
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise PayloadError(f"{name}: not valid WebAssembly text: {lines[0]}") from None
    if data.startswith(b"\0asm"):
        return data
    what = ("an ELF program (attestcall run runs native programs)" if data.startswith(b"\x7fELF")
            else "empty" if not data else "not a WebAssembly module")
    raise PayloadError(f"{name}: {what}: deploy sends a WebAssembly binary (.wasm, starting "
                       "with \\0asm) or WebAssembly text (.wat)")


class _DeployReport:
    """What ``deploy`` says on stderr: the keep it trusted and why (a line; more with -v;
    one JSON object with --json), then, with --json, the outcome as a last JSON line."""

    def __init__(self, args: argparse.Namespace):
        self.address = f"{args.keep[0]}:{args.keep[1]}"
        self.verbose, self.json = args.verbose, args.json

    def _emit(self, document: dict[str, Any]) -> None:
        import json

        print(json.dumps(document, sort_keys=True), file=sys.stderr, flush=True)

    def trusted(self, seen: Any) -> None:
        verdict = seen.verdict
        if self.json:
            self._emit({"keep": self.address, "trusted": True, "trusted_by": seen.trusted_by,
                        "tls": {"version": seen.version, "group": seen.group,
                                "key_type": seen.key_type},
                        "verdict": verdict.to_json() if verdict is not None else None})
            return
        print(f"attestcall deploy: keep {self.address} trusted: {seen.describe()}",
              file=sys.stderr, flush=True)
        if not self.verbose:
            return
        basis = {"ca": "its certificate, issued by the attestation service CA given",
                 "launch key": "its TLS key, the one delivered at launch (SEV)",
                 "no TEE": "the policy's [none] allow = true (no TEE)"}
        if verdict is None:
            print(f"  vouched for by {basis.get(seen.trusted_by, seen.trusted_by)}",
                  file=sys.stderr, flush=True)
            return
        from attestcall.cli.verify import _one_line

        lines = [f"  evidence {_one_line(verdict)}", "  bound to this TLS session's key"]
        lines += [f"  {key} {value}" for key, value in sorted(verdict.claims.items())
                  if value is not None]
        print("\n".join(lines), file=sys.stderr, flush=True)

    def refused(self, exc: Any) -> None:
        if self.json:
            verdict = exc.verdict.to_json() if exc.verdict is not None else None
            self._emit({"keep": self.address, "trusted": False, "reasons": exc.reasons,
                        "verdict": verdict})
        else:
            print("attestcall deploy: keep refused, nothing was sent:", file=sys.stderr)
            for reason in exc.reasons:
                print(f"  - {reason}", file=sys.stderr)

    def outcome(self, status: int, by: str, error: str | None = None) -> None:
        if self.json:
            self._emit({"exit_status": status, "by": by, "error": error})
        elif error is not None:
            print(f"attestcall deploy: {error}", file=sys.stderr)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from attestcall.deploy.tenant import (
        DeployRefused,
        KeepFailed,
        deploy,
        file_collateral,
        first_collateral,
        service_collateral,
    )

    report = _DeployReport(args)
    try:
        if args.service_ca is not None and args.ca is None:
            raise UsageError("--service-ca goes with --ca CA.pem (it is for the CRL's HTTPS)")
        if args.collateral is not None and args.pccs is not None:
            raise UsageError("give --collateral or --pccs, not both")
        files = [(option, getattr(args, option.lstrip("-").replace("-", "_"), None))
                 for option in registry().collateral_file_options()]
        providers = [*(file_collateral(option, value) for option, value in files if value),
                     *([service_collateral("--pccs", args.pccs)] if args.pccs else []),
                     *([service_collateral("--kds", args.kds)] if args.kds else [])]
        workload = _workload_bytes(args.workload)
        status = deploy(args.keep, workload, args.args,
                        policy=Path(args.policy) if args.policy is not None else None,
                        trust_simulated=args.trust_simulated, key_type=args.key_type,
                        collateral_for=first_collateral(*providers),
                        ca=args.ca, service_ca=args.service_ca, on_trusted=report.trusted)
    except DeployRefused as exc:
        report.refused(exc)
        report.outcome(EXIT_DEPLOY_FAILED, "attestcall", "keep refused, nothing was sent"
                       if args.json else None)
        return EXIT_DEPLOY_FAILED
    except KeepFailed as exc:
        report.outcome(EXIT_DEPLOY_BROKEN, "keep", str(exc))
        return EXIT_DEPLOY_BROKEN
    except AttestcallError as exc:  # usage, the workload, the policy, an unreachable keep
        report.outcome(EXIT_DEPLOY_FAILED, "attestcall", str(exc))
        return EXIT_DEPLOY_FAILED
    report.outcome(status & 0xFF, "workload")
    return status & 0xFF


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = _build_parser(command)
    # deploy's own failures share one code, apart from any its workload exits with
    own = {EXIT_USAGE: EXIT_DEPLOY_FAILED, EXIT_INTERNAL: EXIT_DEPLOY_FAILED} \
        if command == "deploy" else {}
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command they were given to
            prog = " ".join(["attestcall", *([args.command] if args.command else [])])
            raise _usage(prog, f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "attest":
            return _cmd_attest(args)
        if args.command == "keep":
            return _cmd_keep(args)
        if args.command == "deploy":
            return _cmd_deploy(args)
        if args.command == "verify":
            from attestcall.cli.verify import run_verify

            return run_verify(args)
        if args.command == "show":
            from attestcall.cli.show import run_show

            return run_show(args)
        if args.command == "collateral":
            from attestcall.cli.verify import run_collateral

            return run_collateral(args, _write_output)
        if args.command == "sim":
            return _cmd_sim(args)
        if args.command == "service":
            from attestcall.cli.service import run as run_service

            return run_service(args)
        if args.command == "devices":
            from attestcall.keep import real

            print(real.describe_probes(real.probe()), end="")
            return 0
        if args.command == "completion":
            return _cmd_completion(args)
        if args.command == "include-dir":
            from attestcall.include_dir import include_dir

            print(include_dir())
            return 0
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(_usage_line(exc), file=sys.stderr)
        return own.get(EXIT_USAGE, EXIT_USAGE)
    except PayloadError as exc:
        print(f"attestcall: {exc}", file=sys.stderr)
        return EXIT_PAYLOAD
    except AttestcallError as exc:
        print(f"attestcall: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, unless asked for more
        if os.environ.get("ATTESTCALL_DEBUG"):
            raise
        print(f"attestcall: internal error: {type(exc).__name__}: {exc} "
              "(set ATTESTCALL_DEBUG=1 for a traceback)", file=sys.stderr)
        return own.get(EXIT_INTERNAL, EXIT_INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
