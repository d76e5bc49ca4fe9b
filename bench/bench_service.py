"""Certificate and EAR token issuance throughput of the attestation service, against their
in-process floors.

    python bench/bench_service.py [--quick] [--duration S] [--clients N] [--configs LIST]

The floor, measured in this run before and after the loads: in this process, one thread,
one ``attestcall.verify`` of the same kind of evidence (collateral loaded once, as a
running verifier has it) plus one CA signature (``ServiceCa.issue``) per certificate.

Each configuration runs the real ``attestcall service serve --trust-simulated`` (this
checkout's sources) with ``--workers 1`` or ``2`` over SQLite (a fresh file) or PostgreSQL
(a fresh database on a throwaway cluster this benchmark starts: ``tests/postgres.py``).
``--clients`` keeps (64) load it, each in a loop: ``GET /v1/challenge``, evidence bound to
that challenge and its key, the CSR, ``POST /v1/certificate``, check 200 and a PEM chain.
Reported per configuration over the measured window (after a warm-up): certificates per
second, the ratio to the floor, p50/p99 latency of the certificate request and of the whole
round (challenge, evidence, CSR, certificate), and the CPU each side used per certificate.

Keeping the clients cheap (the machine has 2 cores; whatever the clients burn the server
cannot use):

- the clients run in ``--client-processes`` separate processes (2), each an asyncio loop
  over its share of the clients, with a minimal HTTP/1.1 client (a request is one write, an
  answer one header read and one body read); a client opens one connection per round, as
  a keep does (``--keep-alive``: one for all its rounds; then uvicorn's first worker to
  wake accepts all 64 connections and a second worker gets nothing to do);
- each client's key is made before the run (the binding changes with every challenge);
- the evidence comes from the simulator in the client process (``--evidence simulator``,
  the default for sgx-sim and tdx-sim: the same EREPORT/TDREPORT and quoting enclave a
  simulated keep's host runs, without the shim <-> host process hop), or through a real
  simulated keep (``--evidence keep``: ``open_keep`` + ``get_attestation``, one keep per
  client process);
- sgx-sim is the default TEE: the cheapest evidence to make (one P-256 quote).

The CPU used by the clients, the server (the serve process and its workers) and PostgreSQL
(the postmaster and its backends) is read from /proc at the window's edges, beside the
whole machine's (other work on the machine shows as "others"). Targets: 1 worker >= 0.5x
the floor; 2 workers >= 1.6x 1 worker (same database). When the clients' own CPU makes the
second target unreachable on this machine, the output says so with the numbers.

Beside them, the server's work per certificate without HTTP, measured in process on one
thread in the same run: a challenge made, and the decision (``Service._issue``: the CSR
read and checked, the challenge consumed, verify, the CA's signature, the issuance
recorded) with its parts, on a SQLite file. The difference between that and the server's
CPU per certificate under load is what HTTP, the ASGI application, the thread hand-offs
and the interpreter lock shared by the worker's threads cost.

After each configuration, every chain a client kept is checked (a leaf for its key,
issued by the CA, valid now) and the audit log must hold exactly as many accepted records
as the clients received chains. Exit status 1 when a target is missed or anything failed.

EAR tokens (configurations ``ear-sqlite-1``, ``ear-sqlite-2``, ``ear-pg-1``, ``ear-pg-2``):
the same clients as relying parties do: each keeps one connection (``--ear-new-connections``:
one per token), makes evidence bound to a nonce of its own and ``POST /v1/attestation``
(JSON, base64url, ``{"evidence", "nonce"}``), one request per token (``--ear-binding
challenge``: a ``GET /v1/challenge`` first, the evidence bound to SHA-512(challenge)); each
answer must be 200 with a token. Their floor, measured in the same run: one
``attestcall.verify`` plus the EAR claims-set and one ES384 signature
(``TokenSigner.sign``) per token, timed by the wall clock and by the thread's CPU. Target:
>= 0.5x that floor per worker, judged by CPU (what a worker makes on a CPU of its own): the
floor's CPU per token over the server's. The rate per worker against the wall-clock floor
is printed beside; it says the same only while each worker has a CPU to itself, which 2
workers sharing 2 CPUs with the clients (and a shared machine) never have.
Each client's last token is checked: signed by the service's key, affirming.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# this checkout's sources, as the servers run them (tests.service.helpers.environment), and
# tests/ for the PostgreSQL cluster and the serve helper
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from timing import rounds_with_cpu  # noqa: E402

CONFIGS = ("sqlite-1", "sqlite-2", "pg-1", "pg-2",
           "ear-sqlite-1", "ear-sqlite-2", "ear-pg-1", "ear-pg-2")
TEES = ("sgx-sim", "tdx-sim", "snp-sim")
IN_PROCESS = ("sgx-sim", "tdx-sim")  # TEEs whose simulator the clients can run in process
TARGET_FLOOR = 0.5  # 1 worker >= this x the floor
TARGET_SCALING = 1.6  # 2 workers >= this x 1 worker
TARGET_EAR = 0.5  # EAR tokens: >= this x their floor per worker
TOKEN_LIFE = dt.timedelta(minutes=10)
REQUEST_TIMEOUT = 60.0  # seconds one request may take before the client counts it failed
CHAIN_START = b"-----BEGIN CERTIFICATE-----"


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- evidence


class Evidence:
    """A client's evidence maker: ``make(nonce) -> (technology, evidence)``."""

    def __init__(self, tee: str, mode: str):
        self.tee, self.mode = tee, mode
        self._keep: Any = None
        if mode == "keep":
            from attestcall.deploy.identity import attest
            from attestcall.keep.platforms import open_keep

            self._keep = open_keep(tee, b"")
            self.make: Callable[[bytes], tuple[int, bytes]] = (
                lambda nonce: attest(self._keep.source, nonce))
        elif tee == "sgx-sim":
            from attestcall.intel.sim import sgx

            state = sgx.load_state()
            cpu, qe = sgx.SimulatedCpu(state), sgx.QuotingEnclave(state)
            identity = sgx.EnclaveIdentity.for_payload(b"", state)
            target = qe.target_info()
            self.make = lambda nonce: (2, qe.quote(cpu.ereport(target, nonce, identity)))
        elif tee == "tdx-sim":
            from attestcall.intel.sim import tdx

            state = tdx.load_state()
            module, service = tdx.SimulatedTdxModule(state), tdx.TdQuotingEnclave(state, 4)
            identity = tdx.TdIdentity.for_payload(b"")
            self.make = lambda nonce: (4, service.quote(module.report(nonce, identity)))
        else:
            raise SystemExit(f"bench_service: {tee} has no in-process simulator here; "
                             "use --evidence keep")

    def close(self) -> None:
        if self._keep is not None:
            self._keep.close()


def key_type(tee: str) -> str:
    from attestcall.tees import registry

    record = registry().by_name(tee.removesuffix("-sim"))
    return (record.default_key_type if record is not None else None) or "p256"


# ----------------------------------------------------------------------- the floor


def measure_floor(tee: str, mode: str, ca: Any, count: int, per_round: int,
                  signer: Any = None) -> tuple[list[float], list[float]]:
    """Seconds per certificate in each round, by the wall clock and by the thread's CPU:
    verify (collateral loaded once) + issue; with ``signer`` (a TokenSigner), per EAR
    token: verify + the claims-set + its signature."""
    from cryptography import x509

    from attestcall import ear
    from attestcall.deploy.keys import generate_key
    from attestcall.service import csr as csrs
    from attestcall.service import result as results
    from attestcall.service.attestation import challenge_binding
    from attestcall.tees import registry
    from attestcall.verifier.api import verify
    from attestcall.verifier.policy import Policy

    record = registry().by_name(tee.removesuffix("-sim"))
    assert record is not None
    maker = Evidence(tee, mode)
    try:
        pool = []
        for _ in range(32):
            key = generate_key(key_type(tee))
            challenge = os.urandom(32)
            nonce = (challenge_binding(challenge) if signer is not None
                     else csrs.binding_nonce(key.public_key(), challenge))
            pool.append((key.public_key(), nonce, maker.make(nonce)[1]))
    finally:
        maker.close()
    evidence = pool[0][2]
    collateral = None
    if record.simulated_collateral is not None:
        collateral = record.collateral_source(
            evidence, record.simulated_collateral(evidence), None)
    policy = Policy()
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "attestcall keep")])
    cycle = itertools.cycle(pool)

    def one_certificate() -> None:
        public_key, nonce, evidence = next(cycle)
        now = dt.datetime.now(dt.UTC)
        verdict = verify(evidence, technology=record.name, at=now, nonce=nonce, policy=policy,
                         trust_simulated=True, collateral=collateral)
        assert verdict.accepted, verdict.reasons
        if signer is not None:
            signer.sign(ear.claims_set(verdict, issued_at=now, expires_at=now + TOKEN_LIFE,
                                       nonce=nonce[:32], policy=policy))
            return
        ca.issue(public_key, subject, lifetime=dt.timedelta(hours=24),
                 result=results.from_verdict(verdict, None, policy=policy, issued_at=now),
                 crl_url="http://127.0.0.1/v1/crl", now=now)

    one_certificate()
    return rounds_with_cpu(one_certificate, count, per_round)


# ----------------------------------------------------------------------- the decision's parts


PARTS = (  # (key, what) in the order reported
    ("floor", "verify + CA signature (the floor)"),
    ("csr", "the CSR read, its signature and its binding checked"),
    ("challenge", "database: a challenge made"),
    ("consume", "database: the challenge consumed"),
    ("record", "database: the certificate and its audit record"),
    ("rest", "the rest of the decision (result, PEM, audit fields; its parts together)"),
)


def measure_parts(tee: str, mode: str, ca: Any, scratch: Path, floor: float, count: int,
                  per_round: int) -> dict[str, float]:
    """CPU seconds per certificate, in process, one thread, for the server's work without
    HTTP: a challenge made, and the whole decision (``Service._issue``) on a SQLite file,
    with its parts measured alone (the rest is the decision less the floor and the parts)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from attestcall.deploy.keys import generate_key
    from attestcall.service import app as service_app
    from attestcall.service import csr as csrs
    from attestcall.service.storage import Attempt, Storage

    storage = Storage.open(f"sqlite:///{scratch / 'parts.db'}", scratch)
    maker = Evidence(tee, mode)
    try:
        settings = service_app.Settings(storage=storage, ca=ca, public_url="http://127.0.0.1",
                                        trust_simulated=True)
        service = service_app.Service(settings, service_app.Metrics())
        keys = [generate_key(key_type(tee)) for _ in range(8)]
        now = settings.clock

        def requests(number: int) -> list[bytes]:
            made = []
            for index in range(number):
                key = keys[index % len(keys)]
                challenge, _ = storage.new_challenge(now())
                technology, evidence = maker.make(
                    csrs.binding_nonce(key.public_key(), challenge))
                made.append(csrs.build_csr(key, technology, evidence, challenge)
                            .public_bytes(Encoding.DER))
            return made

        def timed(work: Callable[[Any], object], items: list[Any]) -> float:
            """Median CPU seconds per call (not wall time: a commit's wait for the disk is
            not work) over ``count`` rounds."""
            work(items[0])  # warm
            cursor = iter(items[1:])
            times = []
            for _ in range(count):
                start = time.process_time()
                for _ in range(per_round):
                    work(next(cursor))
                times.append((time.process_time() - start) / per_round)
            return statistics.median(times)

        number = count * per_round + 1
        parts = {"challenge": timed(lambda _: storage.new_challenge(now()), [None] * number)}
        challenges = [storage.new_challenge(now())[0] for _ in range(number)]
        parts["consume"] = timed(lambda c: storage.consume_challenge(c, now()), challenges)
        serials = iter(range(1 << 40, 1 << 41))
        attempt = Attempt(time=now(), peer="127.0.0.1", technology=tee.removesuffix("-sim"),
                          measurement="ab" * 32, tcb_status="UpToDate")
        der = ca.certificate.public_bytes(Encoding.DER)
        parts["record"] = timed(lambda _: storage.record_issuance(
            attempt, serial=next(serials), not_after=now(), der=der), [None] * number)
        parts["csr"] = timed(lambda body: csrs.check_binding(csrs.read_csr(body)),
                             requests(number))
        decision = timed(lambda body: service._issue(body, "127.0.0.1"), requests(number))
        parts["floor"] = floor
        parts["rest"] = max(0.0, decision - sum(parts[k] for k in
                                                ("floor", "csr", "consume", "record")))
        return parts
    finally:
        maker.close()
        storage.close()


# ----------------------------------------------------------------------- clients


@dataclass
class Plan:
    """What a client process does, on the machine's monotonic clock."""

    port: int
    clients: int
    tee: str
    evidence: str
    measure_from: float
    measure_until: float
    keep_alive: bool
    tokens: bool = False  # POST /v1/attestation instead of /v1/certificate
    token_key: Any = None  # the service's token signing key (public), to check tokens
    ear_binding: str = "nonce"  # tokens: the caller's own nonce, or a /v1/challenge


@dataclass
class Tally:
    """What a client process measured."""

    issued_total: int = 0  # 200s over the whole run, warm-up included
    latencies: list[float] = field(default_factory=list)  # POST, in the window
    round_trips: list[float] = field(default_factory=list)  # challenge .. chain, in the window
    errors: dict[str, int] = field(default_factory=dict)
    checked: int = 0  # issued chains (or tokens) checked: our key, the CA's; signed
    fatal: str | None = None

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Http:
    """One persistent HTTP/1.1 connection to 127.0.0.1:PORT; answers must carry a
    Content-Length (the service's always do)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(head + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length, close = None, False
        for line in header.lower().split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip() == b"close":
                close = True
        if length is None:
            raise ValueError("an answer without Content-Length")
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_token(answer: bytes, public_key: Any) -> None:
    """The token in ``answer`` is signed ES384 by ``public_key`` and affirming."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    head, payload, signature = json.loads(answer)["token"].split(".")
    raw = unb64(signature)
    public_key.verify(encode_dss_signature(int.from_bytes(raw[:48]), int.from_bytes(raw[48:])),
                      f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA384()))
    (appraisal,) = json.loads(unb64(payload))["submods"].values()
    if appraisal["ear.status"] != "affirming":
        raise ValueError(f"a token is {appraisal['ear.status']}: {appraisal}")


def _problem(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail", "")
    except (ValueError, AttributeError):
        detail = body[:80].decode(errors="replace")
    return f"HTTP {status}: {detail}"


async def _client(plan: Plan, maker: Evidence, key: Any, tally: Tally,
                  last: list[bytes]) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from attestcall.service import csr as csrs
    from attestcall.service.attestation import challenge_binding

    get = b"GET /v1/challenge HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    post = ("POST /v1/certificate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/pkcs10\r\nContent-Length: {}\r\n\r\n")
    if plan.tokens:
        post = ("POST /v1/attestation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n")
    http = Http(plan.port)
    try:
        while time.monotonic() < plan.measure_until:
            start = time.monotonic()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    if plan.tokens and plan.ear_binding == "nonce":  # one request
                        nonce = os.urandom(64)
                        _, evidence = maker.make(nonce)
                        der = json.dumps({"evidence": _b64(evidence),
                                          "nonce": _b64(nonce)}).encode()
                    else:
                        status, body = await http.request(get)
                        if status != 200:
                            tally.error("challenge " + _problem(status, body))
                            continue
                        text = json.loads(body)["challenge"]
                        challenge = csrs.decode_challenge(text)
                        if plan.tokens:
                            _, evidence = maker.make(challenge_binding(challenge))
                            der = json.dumps({"evidence": _b64(evidence),
                                              "challenge": text}).encode()
                        else:
                            technology, evidence = maker.make(
                                csrs.binding_nonce(key.public_key(), challenge))
                            csr = csrs.build_csr(key, technology, evidence, challenge)
                            der = csr.public_bytes(Encoding.DER)
                    sent = time.monotonic()
                    status, body = await http.request(post.format(len(der)).encode(), der)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}"[:120])
                http.close()
                continue
            done = time.monotonic()
            if not plan.keep_alive:
                http.close()
            if status != 200 or not body.startswith(b'{"token":"ey' if plan.tokens
                                                    else CHAIN_START):
                tally.error(("token " if plan.tokens else "certificate ")
                            + _problem(status, body))
                continue
            tally.issued_total += 1
            last[0] = body
            if plan.measure_from <= done < plan.measure_until:
                tally.latencies.append(done - sent)
                tally.round_trips.append(done - start)
    finally:
        http.close()


async def _load(plan: Plan, tally: Tally) -> None:
    from attestcall.deploy.keys import generate_key
    from attestcall.deploy.service_client import check_chain

    maker = Evidence(plan.tee, plan.evidence)
    try:
        keys = [generate_key(key_type(plan.tee)) for _ in range(plan.clients)]
        chains: list[list[bytes]] = [[b""] for _ in keys]
        await asyncio.gather(*(_client(plan, maker, key, tally, chain)
                               for key, chain in zip(keys, chains, strict=True)))
        for key, chain in zip(keys, chains, strict=True):
            if chain[0] and plan.tokens:
                check_token(chain[0], plan.token_key)
                tally.checked += 1
            elif chain[0]:
                check_chain(chain[0], key)
                tally.checked += 1
    finally:
        maker.close()


def client_process(plan: Plan, pipe: Any) -> None:
    tally = Tally()
    try:
        asyncio.run(_load(plan, tally))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        tally.fatal = f"{type(exc).__name__}: {exc}"
    pipe.send(tally)
    pipe.close()


# ----------------------------------------------------------------------- CPU accounting


TICK = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))


def process_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, own CPU seconds, reaped children's CPU seconds), from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK,
                                  (int(fields[13]) + int(fields[14])) / TICK)
    return table


def tree_cpu(table: dict[int, tuple[int, float, float]], root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, plus the reaped ones it waited for."""
    if root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = table[root][2], [root]
    while stack:
        pid = stack.pop()
        total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


@dataclass
class Cpu:
    clients: float
    server: float
    database: float
    machine: float


def sample(client_pids: list[int], server_pid: int, database_pid: int | None) -> Cpu:
    table = process_table()
    return Cpu(clients=sum(tree_cpu(table, pid) for pid in client_pids),
               server=tree_cpu(table, server_pid),
               database=tree_cpu(table, database_pid) if database_pid else 0.0,
               machine=machine_busy())


# ----------------------------------------------------------------------- one configuration


@dataclass
class Outcome:
    name: str
    database: str
    workers: int
    rate: float
    latencies: list[float]
    round_trips: list[float]
    cpu: Cpu  # seconds over the window
    window: float
    issued_total: int
    audited: int
    checked: int
    errors: dict[str, int]
    tokens: bool = False

    def per_certificate(self, seconds: float) -> float:
        count = len(self.latencies)
        return seconds / count if count else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run_config(name: str, args: argparse.Namespace, env: dict[str, str], service_home: Path,
               url: str, database_pid: int | None) -> Outcome:
    from attestcall.service.storage import Storage
    from tests.service.helpers import Served

    tokens = name.startswith("ear-")
    database, workers = name.removeprefix("ear-").split("-")
    label = ("EAR, " if tokens else "") + \
        f"{'SQLite' if database == 'sqlite' else 'PostgreSQL'}, {workers} worker" + (
        "s" if workers != "1" else "")
    progress(f"[{label}] starting attestcall service serve --workers {workers}")
    served = Served(env, "--home", str(service_home), "--database", url,
                    "--workers", workers, "--trust-simulated")
    context = multiprocessing.get_context("fork")
    processes, pipes = [], []
    try:
        share = [args.clients // args.client_processes + (i < args.clients %
                 args.client_processes) for i in range(args.client_processes)]
        # the client processes start loading as soon as they are up (half a second)
        measure_from = time.monotonic() + 0.5 + args.warmup
        measure_until = measure_from + args.duration
        for clients in share:
            keep_alive = args.keep_alive or (tokens and not args.ear_new_connections)
            plan = Plan(served.port, clients, args.tee, args.evidence, measure_from,
                        measure_until, keep_alive, tokens, args.token_key, args.ear_binding)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=client_process, args=(plan, sender), daemon=True)
            process.start()
            sender.close()
            processes.append(process)
            pipes.append(receiver)
        progress(f"[{label}] {args.clients} clients in {len(processes)} processes: "
                 f"warming up {args.warmup:g} s, then measuring {args.duration:g} s")
        pids = [p.pid for p in processes if p.pid is not None]
        time.sleep(max(0.0, measure_from - time.monotonic()))
        before = sample(pids, served.process.pid, database_pid)
        time.sleep(max(0.0, measure_until - time.monotonic()))
        after = sample(pids, served.process.pid, database_pid)
        tallies = []
        for pipe, process in zip(pipes, processes, strict=True):
            if not pipe.poll(REQUEST_TIMEOUT + 30):
                raise RuntimeError("a client process did not report")
            tallies.append(pipe.recv())
            process.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        served.stop()
    with Storage.open(url, service_home) as storage:
        audited = sum(1 for r in storage.audit_log() if r.outcome == "accepted")
    errors: dict[str, int] = {}
    for tally in tallies:
        if tally.fatal:
            errors["client process: " + tally.fatal] = 1
        for what, count in tally.errors.items():
            errors[what] = errors.get(what, 0) + count
    latencies = [x for t in tallies for x in t.latencies]
    window = args.duration
    cpu = Cpu(after.clients - before.clients, after.server - before.server,
              after.database - before.database, after.machine - before.machine)
    outcome = Outcome(label, database, int(workers), len(latencies) / window, latencies,
                      [x for t in tallies for x in t.round_trips], cpu, window,
                      sum(t.issued_total for t in tallies), audited,
                      sum(t.checked for t in tallies), errors, tokens)
    what = "tokens" if tokens else "certificates"
    progress(f"[{label}] {len(latencies)} {what} in the window; {outcome.issued_total} "
             f"in all, {audited} accepted in the audit log, {outcome.checked} checked")
    return outcome


# ----------------------------------------------------------------------- report


def report(floor: float, floor_rounds: tuple[list[float], list[float]],
           parts: dict[str, float], outcomes: list[Outcome], args: argparse.Namespace,
           ear_floor: tuple[float, tuple[list[float], list[float]], float] | None = None
           ) -> int:
    ms = 1000.0
    cpus = CPUS
    before, after = (1 / statistics.median(r) for r in floor_rounds)
    print(f"attestation service issuance: {args.tee} evidence ({args.evidence}), "
          f"{args.clients} clients in {args.client_processes} processes, a connection "
          f"{'per client' if args.keep_alive else 'per round'}, "
          f"{args.duration:g} s windows after {args.warmup:g} s of warm-up, {cpus} CPUs")
    print(f"floor (in process, one thread: attestcall.verify + ServiceCa.issue): "
          f"{floor:.0f} certificates/s, {ms / floor:.2f} ms each ({before:.0f}/s before the "
          f"loads, {after:.0f}/s after)")
    if ear_floor is not None:
        token_floor, token_rounds, token_cpu = ear_floor
        tb, ta = (1 / statistics.median(r) for r in token_rounds)
        print(f"EAR floor (in process, one thread: attestcall.verify + the EAR claims-set + one "
              f"ES384 signature): {token_floor:.0f} tokens/s, {ms / token_floor:.2f} ms each "
              f"({tb:.0f}/s before the loads, {ta:.0f}/s after); {token_cpu * ms:.2f} ms of "
              "CPU each")
    print()
    print(f"{'':<23} {'':>7} {'':>7}  {'certificate':^15}  {'whole round':^15}  "
          f"{'CPU ms per certificate':^24}  {'CPUs busy':^15}")
    print(f"{'configuration':<23} {'cert/s':>7} {'/floor':>7}  {'p50 ms':>7} {'p99 ms':>7}  "
          f"{'p50 ms':>7} {'p99 ms':>7}  {'clients':>7} {'server':>7} {'db':>7}  "
          f"{'all':>7} {'others':>7}")
    def floor_of(o: Outcome) -> float:
        return ear_floor[0] if o.tokens and ear_floor is not None else floor

    for o in outcomes:
        cpu = o.cpu
        others = (cpu.machine - cpu.clients - cpu.server - cpu.database) / o.window
        print(f"{o.name:<23} {o.rate:7.0f} {o.rate / floor_of(o):6.2f}x  "
              f"{percentile(o.latencies, .5) * ms:7.1f} {percentile(o.latencies, .99) * ms:7.1f}  "
              f"{percentile(o.round_trips, .5) * ms:7.1f} "
              f"{percentile(o.round_trips, .99) * ms:7.1f}  "
              f"{o.per_certificate(cpu.clients) * ms:7.2f} "
              f"{o.per_certificate(cpu.server) * ms:7.2f} "
              f"{o.per_certificate(cpu.database) * ms:7.2f}  "
              f"{cpu.machine / o.window:7.2f} {others:7.2f}")
    print()
    work = sum(parts.values())
    print("the server's work per certificate without HTTP, in process, one thread, SQLite "
          "(medians, this run):")
    for key, what in PARTS:
        print(f"    {what:<72} {parts[key] * ms:5.2f} ms")
    print(f"    {'= a certificate (challenge, decision) without HTTP':<72} {work * ms:5.2f} ms"
          f" ({work * floor:.1f}x the floor)")
    print(f"  {TARGET_FLOOR}x the floor asks one worker (one interpreter lock, about one CPU) "
          f"for at most {1 / TARGET_FLOOR:g} x {ms / floor:.2f} = "
          f"{ms / floor / TARGET_FLOOR:.2f} ms of CPU per certificate"
          + (": the work alone, without HTTP, is already over it" if work * floor
             > 1 / TARGET_FLOOR else ""))
    print()
    missed = 0
    ones = {o.database: o for o in outcomes if o.workers == 1 and not o.tokens}
    for o in outcomes:
        if o.tokens:
            # Per worker: what each worker makes per second of a CPU of its own, against
            # the floor's one thread: the floor's CPU per token over the server's. With 1
            # worker its rate says the same while it has a CPU to itself; with 2 the
            # workers share the 2 CPUs with the clients, so their rate per worker does not.
            assert ear_floor is not None
            server = o.per_certificate(o.cpu.server)
            ratio = ear_floor[2] / server
            by_rate = o.rate / o.workers / floor_of(o)
            missed += ratio < TARGET_EAR
            print(f"{o.name}: {ratio:.2f}x the EAR floor per worker-CPU (target >= "
                  f"{TARGET_EAR}x){'' if ratio >= TARGET_EAR else '  MISSED'}: the server's "
                  f"CPU per token {server * ms:.2f} ms, the floor's {ear_floor[2] * ms:.2f} "
                  f"ms; the rate per worker {by_rate:.2f}x the floor's, with "
                  f"{o.cpu.machine / o.window:.2f} of {cpus} CPUs busy (the clients' and "
                  "others' included)")
            continue
        if o.workers == 1:  # against the floor
            target, what = TARGET_FLOOR, ("the floor", "certificate")
            ratio = o.rate / floor_of(o)
            missed += ratio < target
            server = o.per_certificate(o.cpu.server)
            print(f"{o.name}: {ratio:.2f}x {what[0]} (target >= {target}x)"
                  f"{'' if ratio >= target else '  MISSED'}; the server's CPU per {what[1]} "
                  f"{server * ms:.2f} ms is {server * floor_of(o):.1f}x the floor's")
            if not o.tokens:
                print(f"    of it {work * ms:.2f} ms the work without HTTP (above), "
                      f"{(server - work) * ms:.2f} ms two HTTP requests, the ASGI application, "
                      "the thread hand-offs and the interpreter lock shared under load")
            continue
        one = ones.get(o.database)
        if one is None or not one.rate:
            continue
        scaling = o.rate / one.rate
        missed += scaling < TARGET_SCALING
        print(f"{o.name}: {scaling:.2f}x 1 worker (target >= {TARGET_SCALING}x)"
              f"{'' if scaling >= TARGET_SCALING else '  MISSED'}")
        # What this machine allows: each certificate costs the clients, the server and the
        # database the CPU measured with 1 worker; the CPUs bound the rate.
        parts = [one.per_certificate(x) for x in (one.cpu.clients, one.cpu.server,
                                                   one.cpu.database)]
        cost, served = sum(parts), parts[1] + parts[2]
        ceiling = cpus / cost / one.rate
        busy = o.cpu.machine / o.window
        print(f"    at 1 worker's {cost * ms:.2f} ms CPU per certificate (clients "
              f"{parts[0] * ms:.2f}, server {parts[1] * ms:.2f}, database {parts[2] * ms:.2f}) "
              f"{cpus} CPUs allow about {ceiling:.2f}x 1 worker ({cpus / served / one.rate:.2f}x "
              "with the clients elsewhere)"
              + ("; the clients' CPU takes the target out of reach here"
                 if scaling < TARGET_SCALING and ceiling < TARGET_SCALING
                 <= cpus / served / one.rate else ""))
        print(f"    measured: {busy:.2f} of {cpus} CPUs busy"
              + (" (others included): the rate was bound by something other than CPU"
                 if busy < 0.85 * cpus else ": the CPUs were saturated"))
    failed = 0
    for o in outcomes:
        if o.errors:
            failed += 1
            print(f"{o.name}: FAILED requests:")
            for what, count in sorted(o.errors.items(), key=lambda item: -item[1])[:10]:
                print(f"    {count:6d}  {what}")
        if o.audited != o.issued_total:
            failed += 1
            print(f"{o.name}: FAILED: {o.issued_total} answers received, {o.audited} accepted "
                  "records in the audit log")
    print("certificate: POST /v1/certificate (EAR: /v1/attestation); whole round: challenge, "
          "evidence, CSR and certificate (or token). CPU from /proc over the window, per "
          "certificate or token:\nclients = the client processes, "
          "server = serve and its workers, db = the PostgreSQL cluster, all = the whole "
          "machine, others = all - ours.")
    return 1 if missed or failed else 0


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_service.py",
        description="Certificate and EAR token issuance throughput of `attestcall service "
        "serve` (1 and 2 workers, SQLite and PostgreSQL) under concurrent keeps, against the "
        "in-process floors (verify + CA signature; verify + ES384 signature) measured in the "
        "same run.")
    parser.add_argument("--quick", action="store_true",
                        help="short windows and a short floor (well under a minute)")
    parser.add_argument("--duration", type=float, help="measured seconds per configuration "
                        "(default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring "
                        "(default 3; 1 with --quick)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--client-processes", type=int, default=2, metavar="N",
                        help="processes the clients are spread over (2)")
    parser.add_argument("--keep-alive", action="store_true",
                        help="each client keeps one connection for all its rounds (default: "
                        "a connection per round, as a keep does)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default all)")
    parser.add_argument("--tee", choices=TEES, default="sgx-sim",
                        help="the simulated TEE of the keeps (default sgx-sim)")
    parser.add_argument("--evidence", choices=("simulator", "keep"),
                        help="evidence from the simulator in the client process (default "
                        "for sgx-sim and tdx-sim) or through a simulated keep (open_keep)")
    parser.add_argument("--ear-binding", choices=("nonce", "challenge"), default="nonce",
                        help="EAR tokens bound to the caller's own nonce, one request each "
                        "(default, as a relying party asks), or to a /v1/challenge first")
    parser.add_argument("--ear-new-connections", action="store_true",
                        help="EAR callers open a connection per token (default: each keeps "
                        "one, as a relying party's HTTP client pool does)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.evidence = args.evidence or ("simulator" if args.tee in IN_PROCESS else "keep")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        parser.error(f"unknown configuration {', '.join(unknown) or '(none)'}; "
                     f"choose from {', '.join(CONFIGS)}")
    if args.clients < 1 or not 1 <= args.client_processes <= args.clients:
        parser.error("--clients must be at least 1 and --client-processes within 1..clients")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="attestcall-bench-service-"))
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    os.environ.setdefault("ATTESTCALL_HOME", str(scratch / "sim"))
    os.environ["ATTESTCALL_CACHE"] = str(scratch / "cache")
    from attestcall.service.ca import ServiceCa
    from attestcall.service.tokens import TokenSigner
    from tests.service.helpers import environment

    service_home = scratch / "service"
    ca = ServiceCa.load_or_create(service_home)  # the servers sign with this same CA
    signer = TokenSigner.load_or_create(service_home)  # ... and their tokens with this key
    args.token_key = signer.key.public_key()
    tokens = any(c.startswith("ear-") for c in args.configs)
    env = environment(Path(os.environ["ATTESTCALL_HOME"]))
    env["ATTESTCALL_CACHE"] = os.environ["ATTESTCALL_CACHE"]
    count, per_round = (7, 100) if args.quick else (15, 200)

    progress(f"floor: {count} rounds of {per_round} certificates in process")
    floor_before, _ = measure_floor(args.tee, args.evidence, ca, count, per_round)
    ear_before, ear_cpu_before = (
        measure_floor(args.tee, args.evidence, ca, count, per_round, signer) if tokens
        else ([], []))
    progress("the server's work without HTTP, in process: a challenge made, the decision "
             "and its parts")
    parts = measure_parts(args.tee, args.evidence, ca, scratch,
                          statistics.median(floor_before), count, per_round // 4)
    cluster = None
    outcomes = []
    try:
        if any(c.removeprefix("ear-").startswith("pg-") for c in args.configs):
            from tests.postgres import Cluster

            progress("starting a throwaway PostgreSQL cluster (tests/postgres.py)")
            cluster = Cluster()
        for name in args.configs:
            if name.removeprefix("ear-").startswith("pg-"):
                assert cluster is not None
                url = cluster.create_database()
                pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
            else:
                url, pid = f"sqlite:///{scratch / (name + '.db')}", None
            outcomes.append(run_config(name, args, env, service_home, url, pid))
    finally:
        if cluster is not None:
            cluster.close()
    progress(f"floor again: {count} rounds of {per_round}")
    floor_after, _ = measure_floor(args.tee, args.evidence, ca, count, per_round)
    floor = 1 / statistics.median(floor_before + floor_after)
    ear_floor = None
    if tokens:
        ear_after, ear_cpu_after = measure_floor(args.tee, args.evidence, ca, count, per_round,
                                                 signer)
        ear_floor = (1 / statistics.median(ear_before + ear_after), (ear_before, ear_after),
                     statistics.median(ear_cpu_before + ear_cpu_after))
    return report(floor, (floor_before, floor_after), parts, outcomes, args, ear_floor)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
