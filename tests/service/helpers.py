"""What the service's tests share: a keep's CSR, one bounded HTTP exchange, the problem
document check, and ``attestcall service`` run as real processes (``Served``, ``cli``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from attestcall import ear, fetch
from attestcall.deploy.identity import attest
from attestcall.deploy.keys import generate_key
from attestcall.intel.sim import sgx as sgx_sim
from attestcall.intel.sim.sgx.collateral import collateral as sgx_collateral
from attestcall.intel.sim.tdx import collateral as tdx_collateral
from attestcall.intel.sim.tdx.state import load_state as load_tdx_state
from attestcall.service import csr as csrs
from attestcall.service import result as results
from attestcall.service.tokens import b64url
from attestcall.tees import registry
from attestcall.verifier.verdict import Verdict
from tests.fakes.collateral_server import CollateralServer, serve_intel
from tests.paths import REPO

SRC = REPO / "src"
TEES = {"sgx-sim": "sgx", "snp-sim": "snp", "tdx-sim": "tdx", "cca-sim": "cca"}  # simulated keeps
TIMEOUT = 60.0  # seconds any one socket or process operation may take before the test fails


def exchange(port: int, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/pkcs10", timeout: float = TIMEOUT,
             tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:``port`` on a fresh connection (HTTPS with ``tls``):
    the status, the headers (lower-case names) and the body."""
    connection = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
                  if tls is not None else
                  http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def make_csr(source, challenge: bytes, *, key=None, bind_key=None, bind_challenge=None,
             pem: bool = False) -> tuple[bytes, object]:
    """A keep's CSR: a fresh key (or ``key``), evidence from ``source`` bound to
    ``bind_key``/``bind_challenge`` (default: the key and ``challenge``)."""
    key = key or generate_key("p384")
    nonce = csrs.binding_nonce((bind_key or key).public_key(), bind_challenge or challenge)
    technology, evidence = attest(source, nonce)
    tee = registry().by_id(technology)
    assert tee is not None
    csr = csrs.build_csr(key, technology, evidence, challenge)
    encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    return csr.public_bytes(encoding), key


def assert_problem(status: int, headers: dict, body: bytes, expected: int) -> dict:
    """An RFC 9457 problem document with status ``expected`` and its reasons, no traceback."""
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body)
    assert set(document) == {"type", "title", "status", "detail", "reasons"}
    assert document["status"] == expected
    assert isinstance(document["reasons"], list) and document["reasons"]
    assert all(isinstance(r, str) for r in document["reasons"])
    text = body.decode()
    assert "Traceback" not in text and "File \"" not in text
    return document


def serve_simulated_pcs(server: CollateralServer, sim_home: Path,
                        issued: dt.datetime | None = None) -> dict[str, dict[str, str]]:
    """Serve the sgx-sim and tdx-sim platforms' collateral (of ``sim_home``, issued at
    ``issued``, default an hour ago) on ``server`` as Intel's PCS does; their
    QuoteCollateralV3 fields by TEE. (Both platforms share one PCK hierarchy and FMSPC:
    the PCK CRL and root CA CRL served are the TDX collateral's.)"""
    issued = issued or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    sgx_state, tdx_state = sgx_sim.load_state(sim_home), load_tdx_state(sim_home)
    fields = {"sgx": sgx_collateral(sgx_state, issued=issued),
              "tdx": tdx_collateral.collateral(tdx_state, issued=issued)}
    for tee, collateral in fields.items():
        serve_intel(server, collateral, tee=tee, fmspc=sgx_state.fmspc.hex().upper(),
                    ca="platform")
    return fields


def verdict_for(technology: str, claims: dict, **fields) -> Verdict:
    """An accepted verdict on ``technology``'s evidence with these claims (UpToDate, one
    advisory, unless ``fields`` say otherwise)."""
    base = dict(accepted=True, technology=technology, tcb_status="UpToDate",
                advisories=["INTEL-SA-00001"], claims=claims, reasons=[])
    base.update(fields)
    return Verdict(**base)


def edited(result: results.AttestationResult, name: str | None = None,
           **changes) -> results.AttestationResult:
    """``result`` with its appraisal's claims changed (``attestcall_tcb_status="OutOfDate"``:
    the claim's name with ``_`` for ``-`` and ``.``; None removes it), filed under the
    technology ``name`` (default: the same): a result the service would not issue."""
    old_name, item = ear.only_appraisal(result.claims)
    item = dict(item)
    names = {key.replace("-", "_").replace(".", "_"): key
             for key in (*item, ear.TCB_STATUS_CLAIM)}
    for key, value in changes.items():
        if value is None:
            item.pop(names[key], None)
        else:
            item[names[key]] = value
    return results.AttestationResult({**result.claims, ear.SUBMODS: {name or old_name: item}})


@contextmanager
def database_away(home: Path) -> Iterator[None]:
    """The SQLite database files of the service ``home`` moved aside (the service's database
    vanished) for the block, then put back."""
    from attestcall.service.storage import DATABASE_FILE

    aside = home / "aside"
    aside.mkdir()
    moved = [name for name in os.listdir(home) if name.startswith(DATABASE_FILE)]
    for name in moved:
        shutil.move(home / name, aside / name)
    try:
        yield
    finally:
        for name in moved:
            shutil.move(aside / name, home / name)
        aside.rmdir()


# ------------------------------------------------------------------- real processes


def environment(sim_home: Path) -> dict[str, str]:
    """The environment of an ``attestcall`` subprocess: these sources first, the tests'
    simulated-platform home, no service home of the user's."""
    env = dict(os.environ, ATTESTCALL_HOME=str(sim_home), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.pop("ATTESTCALL_SERVICE_HOME", None)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attestcall", *args], env=env,
                          capture_output=True, timeout=TIMEOUT)


class Served:
    """``attestcall service serve`` in a subprocess, on a port it picked. Its log goes to a
    temporary file (a pipe nobody reads would stall a service that logs a lot). ``trust``:
    the CA file requests trust when the service serves HTTPS (``--tls-cert``)."""

    def __init__(self, env: dict[str, str], *args: str, trust: Path | None = None):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attestcall", "service", "serve", "--listen",
             "127.0.0.1:0", *args], env=env, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True)  # its own process group: kill() reaches its workers
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT)
        line = self.process.stdout.readline().decode() if ready else ""
        match = re.fullmatch(
            r"listening on (https?)://127\.0\.0\.1:(\d+)( \(\d+ workers\))?\n", line)
        if match is None:
            self.stop()
            raise AssertionError(f"no listening line: {line!r} {self.errors()}")
        self.scheme, self.port = match.group(1), int(match.group(2))
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.tls = fetch.https_context(trust) if self.scheme == "https" else None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        status, _, answer = exchange(self.port, method, path, body, tls=self.tls)
        return status, answer

    def challenge(self) -> bytes:
        status, body = self.request("GET", "/v1/challenge")
        assert status == 200, body
        return csrs.decode_challenge(json.loads(body)["challenge"])

    def certificate(self, source) -> tuple[int, bytes]:
        """A fresh challenge, a CSR with ``source``'s evidence, the service's answer."""
        csr, _ = make_csr(source, self.challenge())
        return self.request("POST", "/v1/certificate", csr)

    def token(self, source) -> tuple[int, bytes]:
        """A fresh challenge, ``source``'s evidence bound to it (report data SHA-512 of the
        challenge), the service's answer to ``POST /v1/attestation``."""
        challenge = self.challenge()
        _, evidence = attest(source, hashlib.sha512(challenge).digest())
        document = {"evidence": b64url(evidence), "challenge": b64url(challenge)}
        return self.request("POST", "/v1/attestation", json.dumps(document).encode())

    def errors(self) -> str:
        """What the service wrote on its standard error so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the service and whatever is left of its process group (its workers):
        no shutdown of any kind. (The group's id cannot be reused while a member lives.)"""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(TIMEOUT)

    def stop(self) -> int:
        """SIGINT and the exit status (killed if it does not end in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(TIMEOUT)
        finally:
            self.kill()
            self.process.stdout.close()
            self.log.close()
