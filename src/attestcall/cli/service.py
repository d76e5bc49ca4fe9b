"""``attestcall service``: run the attestation service and administer its state.

This module is imported only when the ``service`` command runs; it imports the service
package (Starlette, uvicorn, SQLAlchemy) only inside the commands."""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from attestcall.errors import UsageError

HOME_ENV = "ATTESTCALL_SERVICE_HOME"
CA_KEY_TYPES = ("p384", "p256", "ed25519", "mldsa65")  # service.ca's (not imported: start-up)
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def default_home() -> Path:
    """``$ATTESTCALL_SERVICE_HOME``, else ``$XDG_DATA_HOME/attestcall/service``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "attestcall" / "service"


def duration(text: str) -> dt.timedelta:
    """``24h``, ``90m``, ``3600s``, ``7d`` (a bare number is seconds)."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive duration such as 24h, 90m or 3600s")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _tee_file(text: str) -> tuple[str, str]:
    """``TECH=FILE`` (``serve --collateral``)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not TECH=FILE (e.g. sgx=collateral.json)")
    return name.strip().lower(), path


def add_parser(commands, host_port, parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``service`` command and its actions."""
    service = commands.add_parser(
        "service", help="run the attestation service: certificates for a fleet of keeps",
        description="The attestation service: keeps send a CSR carrying evidence bound to "
        "their key and a one-time challenge, and get a short-lived certificate under the "
        "service CA. State (challenges, certificates, revocations, audit log) is in a "
        "database; the CA key is in the home directory.")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION",
                                     parser_class=parser_class)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--home", type=Path, default=None, metavar="DIR",
                            help=f"the service home: CA key and certificate, and the SQLite "
                            f"database by default (default ${HOME_ENV}, else "
                            "$XDG_DATA_HOME/attestcall/service)")
        parser.add_argument("--database", metavar="URL",
                            help="the database URL (default sqlite:///HOME/service.db)")

    serve = actions.add_parser(
        "serve", help="serve the HTTP protocol",
        description="Serve GET /v1/challenge, POST /v1/certificate, POST /v1/attestation "
        "(EAR tokens), GET /.well-known/jwks.json, GET /v1/ca, GET /v1/crl, /healthz, /metrics "
        "and /openapi.json (see the README): plain HTTP, or HTTPS with --tls-cert and "
        "--tls-key.")
    common(serve)
    serve.add_argument("--listen", type=host_port, default=("127.0.0.1", 8443),
                       metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8443; "
                       "port 0 picks a free one)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes (default 1)")
    serve.add_argument("--policy", metavar="FILE", help="policy TOML (see the README)")
    serve.add_argument("--lifetime", type=duration, default=dt.timedelta(hours=24),
                       metavar="DURATION", help="issued certificates' lifetime (default 24h)")
    serve.add_argument("--token-lifetime", type=duration, default=None, metavar="DURATION",
                       help="EAR tokens' lifetime, exp - iat: 1m to 7d (default 10m)")
    serve.add_argument("--pccs", metavar="URL",
                       help="the upstream of Intel collateral, a PCS/PCCS v4 (default Intel's "
                       "PCS, https://api.trustedservices.intel.com)")
    serve.add_argument("--kds", metavar="URL",
                       help="the upstream of AMD certificates, a KDS (default AMD's KDS, "
                       "https://kdsintf.amd.com)")
    serve.add_argument("--collateral", action="append", type=_tee_file, default=[],
                       metavar="TECH=FILE",
                       help="verify TECH's evidence with this collateral file, as verify's "
                       "file option for it reads it (e.g. sgx=collateral.json, snp=certs.pem, "
                       "or a plugin's trust anchors), instead of the collateral cache; "
                       "repeatable")
    serve.add_argument("--trust-simulated", action="store_true",
                       help="accept evidence signed by this machine's simulated roots")
    serve.add_argument("--offline", action="store_true",
                       help="never contact --pccs or --kds: serve the collateral cache and "
                       "imports only (whatever their age); what is missing is 404 on the "
                       "PCCS/KDS paths and a refusal on verification")
    serve.add_argument("--public-url", metavar="URL",
                       help="this service's base URL as keeps and tenants reach it, for the "
                       "CRL distribution point (default http://HOST:PORT of --listen, "
                       "https:// with --tls-cert)")
    serve.add_argument("--tls-cert", metavar="FILE",
                       help="serve HTTPS with this PEM certificate (the server's first, then "
                       "any intermediates); needs --tls-key")
    serve.add_argument("--tls-key", metavar="FILE",
                       help="the certificate's PEM private key, unencrypted")
    serve.add_argument("--ca-key-type", choices=CA_KEY_TYPES, default=None, metavar="TYPE",
                       help=f"the CA's key when serve creates it ({', '.join(CA_KEY_TYPES)}; "
                       "default p384); an existing CA must already be of this type")

    ca = actions.add_parser("ca", help="print or write the CA certificate (PEM)",
                            description="The service CA's certificate, created with its key "
                            "on first use.")
    common(ca)
    ca.add_argument("-o", "--output", metavar="FILE", help="write it here (default stdout)")

    revoke = actions.add_parser(
        "revoke", help="revoke a certificate, or deny a measurement",
        description="Revoke the certificate with SERIAL (hex), or put a measurement on the "
        "deny-list, which revokes every live certificate issued to it and refuses it from "
        "then on.")
    common(revoke)
    revoke.add_argument("serial", nargs="?", metavar="SERIAL", help="the serial, hex")
    revoke.add_argument("--measurement", metavar="HEX", help="deny this measurement")
    revoke.add_argument("--reason", default="", metavar="TEXT",
                        help="why (an RFC 5280 reason name such as keyCompromise gives the "
                        "CRL entry its reason code)")

    collateral = actions.add_parser(
        "collateral", help="import or list the fleet's collateral cache",
        description="The collateral the service keeps in its database and serves on Intel's "
        "PCCS v4 and AMD KDS paths.")
    collateral_actions = collateral.add_subparsers(dest="collateral_command", metavar="ACTION",
                                                   parser_class=parser_class)
    load = collateral_actions.add_parser(
        "import", help="load collateral files into the cache",
        description="Load QuoteCollateralV3 JSON documents, DER or PEM certificates (AMD "
        "VCEKs, ASK/ARK chains) and CRLs (Intel root CA and PCK CRLs, AMD ARK CRLs) into the "
        "cache, each checked under its issuer chain to the pinned Intel or AMD root; a file "
        "that is not collateral, or an item that fails its check, stores nothing.")
    common(load)
    load.add_argument("files", nargs="+", metavar="FILE", type=Path)
    load.add_argument("--trust-simulated", action="store_true",
                      help="also accept collateral signed by this machine's simulated roots")
    listing = collateral_actions.add_parser(
        "list", help="show what is cached, from where, and until when",
        description="Every cached item: vendor, kind, key, where it came from, when it was "
        "fetched and its next update.")
    common(listing)
    listing.add_argument("--json", action="store_true",
                         help="one JSON object a line: vendor, kind, key, source, fetched_at, "
                         "next_update, refresh_at, size")

    log = actions.add_parser("log", help="print the audit log",
                             description="Every certificate and token request, accepted or "
                             "refused, with its kind: certificate (POST /v1/certificate) or "
                             "token (POST /v1/attestation).")
    common(log)
    log.add_argument("--since", metavar="TIME",
                     help="from this instant: ISO 8601 (2025-07-19T10:01:17Z), Unix seconds, "
                     "or a duration ago (24h)")
    log.add_argument("--kind", choices=("certificate", "token"),
                     help="only the requests of this kind")
    log.add_argument("--json", action="store_true",
                     help="one JSON object a line: time, kind, peer, technology, measurement, "
                     "tcb_status, outcome, reasons, serial")


def run(args: argparse.Namespace) -> int:
    actions = "serve, ca, revoke, collateral or log"
    if args.service_command is None:
        raise UsageError(f"attestcall service: choose an action: {actions}")
    home = getattr(args, "home", None) or default_home()
    if args.service_command == "serve":
        return _serve(args, home)
    if args.service_command == "ca":
        return _ca(args, home)
    if args.service_command == "revoke":
        return _revoke(args, home)
    if args.service_command == "log":
        return _log(args, home)
    if args.service_command == "collateral":
        return _collateral(args, home)
    raise UsageError(f"attestcall service: choose an action: {actions}")


def _storage(args: argparse.Namespace, home: Path):
    from attestcall.service.storage import Storage

    return Storage.open(args.database, home)


def _serve(args: argparse.Namespace, home: Path) -> int:
    import uvicorn

    from attestcall import fetch
    from attestcall.service import app as service_app
    from attestcall.service.serving import ServiceConfig
    from attestcall.service.tls import check_files

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.token_lifetime is not None:
        try:
            service_app.check_token_lifetime(args.token_lifetime)
        except UsageError as exc:
            raise UsageError(f"--token-lifetime: {exc}") from None
    tls = check_files(args.tls_cert, args.tls_key)  # before anything listens or starts
    if args.ca_key_type is not None:
        _create_ca(home, args.ca_key_type)
    host, port = args.listen
    log_level = "warning"
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    if tls is None and not fetch.is_loopback(host):
        print(f"attestcall: warning: plain HTTP on {shown}:{port}, which is not a loopback "
              "address: give --tls-cert and --tls-key to serve HTTPS", file=sys.stderr,
              flush=True)
    options = {
        "home": str(home), "database": args.database,
        "public_url": args.public_url or f"{scheme}://{shown}:{port}",
        "policy": args.policy, "lifetime_seconds": args.lifetime.total_seconds(),
        "token_lifetime_seconds": (args.token_lifetime.total_seconds()
                                   if args.token_lifetime is not None else None),
        "pccs": args.pccs, "kds": args.kds, "trust_simulated": args.trust_simulated,
        "offline": args.offline, "collateral_files": dict(args.collateral),
    }
    if args.workers == 1:
        settings = service_app.settings_from_options(**{**options, "home": home})
        config = ServiceConfig(service_app.create_app(settings), log_level=log_level,
                               lifespan="on", header_timeout=settings.header_timeout,
                               tls=tls)
        print(f"listening on {scheme}://{shown}:{port}", flush=True)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shut down cleanly, then passed Ctrl-C on
            pass
        finally:
            settings.storage.close()
        return 0

    from uvicorn.supervisors import Multiprocess

    # Check everything once here, so a bad option fails before any worker starts.
    settings = service_app.settings_from_options(**{**options, "home": home})
    settings.storage.close()
    os.environ[service_app.SETTINGS_ENV] = json.dumps(options)
    with tempfile.TemporaryDirectory(prefix="attestcall-metrics-") as metrics_dir:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        config = ServiceConfig("attestcall.service.app:app_from_environment", factory=True,
                               workers=args.workers, log_level=log_level, lifespan="on",
                               header_timeout=settings.header_timeout, tls=tls)
        print(f"listening on {scheme}://{shown}:{port} ({args.workers} workers)", flush=True)
        if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.36
            supervisor = Multiprocess(config, target=uvicorn.Server(config).run,
                                      sockets=[sock])
        else:
            supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    return 0


def _create_ca(home: Path, key_type: str) -> None:
    """The CA of ``key_type`` in ``home``: created if there is none; UsageError if the one
    there is of another type (a CA's key is never replaced behind its holders' backs)."""
    from attestcall.service.ca import ServiceCa, existing_key_type

    found = existing_key_type(home)
    if found is not None and found != key_type:
        raise UsageError(f"--ca-key-type {key_type}: the CA in {home} already has a {found} "
                         "key; a CA key type applies only when the CA is created")
    ServiceCa.load_or_create(home, key_type)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket the workers inherit. Its protocol is named (IPPROTO_TCP), not
    left 0: asyncio turns Nagle's algorithm off only on connections whose socket says TCP,
    and with it on, every answer written in two parts waited for a delayed ACK (40 ms)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _ca(args: argparse.Namespace, home: Path) -> int:
    from attestcall.service.ca import ServiceCa

    pem = ServiceCa.load_or_create(home).pem()
    if args.output is None:
        sys.stdout.buffer.write(pem)
        sys.stdout.buffer.flush()
        return 0
    try:
        Path(args.output).write_bytes(pem)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"the service CA certificate written to {args.output}")
    return 0


def _revoke(args: argparse.Namespace, home: Path) -> int:
    if (args.serial is None) == (args.measurement is None):
        raise UsageError("attestcall service revoke: give a SERIAL or --measurement HEX")
    from attestcall.service.storage import serial_hex

    try:
        if args.serial is not None:
            serial = serial_hex(args.serial)
        else:
            measurement = args.measurement.strip().lower()
            if not measurement or len(bytes.fromhex(measurement)) > 64:
                raise ValueError(f"not a measurement: {args.measurement!r}")
    except ValueError:
        raise UsageError(f"not a hexadecimal {'serial' if args.serial else 'measurement'}: "
                         f"{args.serial or args.measurement!r}") from None
    with _storage(args, home) as storage:
        if args.serial is not None:
            if not storage.revoke_serial(serial, args.reason):
                print(f"attestcall service revoke: no live certificate with serial {serial} "
                      "(unknown or already revoked)", file=sys.stderr)
                return 1
            print(f"revoked {serial}")
            return 0
        revoked = storage.deny_measurement(measurement, args.reason)
    print(f"measurement {measurement} denied; {len(revoked)} certificate(s) revoked"
          + (": " + " ".join(revoked) if revoked else ""))
    return 0


def _since(text: str) -> dt.datetime:
    match = _DURATION.match(text.strip())
    if match and match.group(2):
        return dt.datetime.now(dt.UTC) - duration(text)
    from attestcall.verifier.detect import parse_instant

    return parse_instant(text)


def _collateral(args: argparse.Namespace, home: Path) -> int:
    from attestcall.service.collateral import CollateralCache

    if args.collateral_command not in ("import", "list"):
        raise UsageError("attestcall service collateral: choose an action: import or list")
    with _storage(args, home) as storage:
        cache = CollateralCache(storage, offline=True,
                                trust_simulated=getattr(args, "trust_simulated", False))
        if args.collateral_command == "import":
            from attestcall.service.collateral_import import import_files

            for planned, record in import_files(args.files, cache):
                print(f"imported {record.item} from {planned.file} (next update "
                      f"{_stamp(record.next_update)})")
            return 0
        records = cache.records()
    if args.json:
        for record in records:
            print(json.dumps(record.as_json()))
        return 0
    rows = [("vendor", "kind", "key", "source", "fetched", "next update")]
    for record in records:
        key = record.item.key or "-"
        rows.append((record.item.vendor, record.item.kind,
                     key if len(key) <= 48 else key[:45] + "...", record.source,
                     _stamp(record.fetched_at), _stamp(record.next_update)))
    _table(rows)
    return 0


def _stamp(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _table(rows: list[tuple[str, ...]]) -> None:
    """Aligned columns, the last one left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


LOG_COLUMNS = ("time", "kind", "peer", "technology", "measurement", "tcb_status", "outcome",
               "serial", "reasons")


def _log(args: argparse.Namespace, home: Path) -> int:
    since = _since(args.since) if args.since else None
    with _storage(args, home) as storage:
        records = storage.audit_log(since, args.kind)
    if args.json:
        for record in records:
            print(json.dumps(record.as_json()))
        return 0
    rows = [LOG_COLUMNS]
    for record in records:
        item = record.as_json()
        item["time"] = record.time.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        item["reasons"] = "; ".join(item["reasons"])
        rows.append(tuple("-" if item[c] in (None, "") else str(item[c])
                          for c in LOG_COLUMNS))
    _table(rows)
    return 0
