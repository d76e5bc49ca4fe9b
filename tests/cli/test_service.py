"""``attestcall service``: serve, ca, revoke and log, through the real command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from joserfc import jwk, jwt

from attestcall.cli import main
from attestcall.cli.service import _listen, default_home, duration
from attestcall.keep.platforms import open_keep
from attestcall.service import result as results
from tests.service.helpers import SRC, TIMEOUT, Served, cli, environment, exchange
from tests.tls_material import encrypted_key, https_files

LOG_KEYS = {"time", "kind", "peer", "technology", "measurement", "tcb_status", "outcome",
            "reasons", "serial"}


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "attestcall-home"


@pytest.fixture(scope="module")
def sgx(sim_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(sim_home))
        with open_keep("sgx-sim", b"") as keep:
            yield keep.source


def test_serve_issue_revoke_and_log(tmp_path, sim_home, sgx):
    env = environment(sim_home)
    home = tmp_path / "service"
    served = Served(env, "--home", str(home), "--trust-simulated", "--lifetime", "90m")
    try:
        status, body = served.certificate(sgx)
        assert status == 200, body
        issued, ca_cert = x509.load_pem_x509_certificates(body)
        life = issued.not_valid_after_utc - issued.not_valid_before_utc
        assert dt.timedelta(minutes=90) <= life <= dt.timedelta(minutes=96)
        status, body = served.certificate(sgx)
        second = x509.load_pem_x509_certificates(body)[0]
        assert served.request("POST", "/v1/certificate", b"junk")[0] == 400

        # ca: stdout and -o, the same certificate the service chains to
        done = cli(env, "service", "ca", "--home", str(home))
        assert done.returncode == 0
        assert x509.load_pem_x509_certificate(done.stdout) == ca_cert
        out = tmp_path / "ca.pem"
        assert cli(env, "service", "ca", "--home", str(home), "-o", str(out)).returncode == 0
        assert x509.load_pem_x509_certificate(out.read_bytes()) == ca_cert

        # revoke a serial: it is in the CRL the running service signs
        serial = format(issued.serial_number, "x")
        done = cli(env, "service", "revoke", serial, "--home", str(home),
                   "--reason", "keyCompromise")
        assert done.returncode == 0 and done.stdout.decode() == f"revoked {serial}\n"
        again = cli(env, "service", "revoke", serial, "--home", str(home))
        assert again.returncode == 1 and b"already revoked" in again.stderr
        crl = x509.load_der_x509_crl(served.request("GET", "/v1/crl")[1])
        assert [r.serial_number for r in crl] == [issued.serial_number]

        # deny the measurement: the other certificate is revoked, the next keep refused
        measurement = results.from_certificate(issued).measurement.hex()
        done = cli(env, "service", "revoke", "--measurement", measurement, "--home", str(home))
        assert done.returncode == 0
        assert done.stdout.decode() == (f"measurement {measurement} denied; 1 certificate(s) "
                                        f"revoked: {format(second.serial_number, 'x')}\n")
        status, body = served.certificate(sgx)
        assert status == 403 and b"deny-list" in body
        crl = x509.load_der_x509_crl(served.request("GET", "/v1/crl")[1])
        assert {r.serial_number for r in crl} == {issued.serial_number, second.serial_number}
    finally:
        assert served.stop() == 0  # SIGINT: a clean shutdown

    # log --json: one object a line, exactly the keys, every attempt
    done = cli(env, "service", "log", "--json", "--home", str(home))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert all(set(r) == LOG_KEYS for r in records)
    assert [r["outcome"] for r in records] == ["accepted", "accepted", "refused", "refused"]
    assert {r["kind"] for r in records} == {"certificate"}
    assert [r["serial"] for r in records] == [format(issued.serial_number, "x"),
                                              format(second.serial_number, "x"), None, None]
    assert all(r["peer"] == "127.0.0.1" for r in records)
    assert records[0]["technology"] == "sgx" and records[0]["measurement"] == measurement
    assert records[0]["reasons"] == [] and records[0]["tcb_status"]
    assert "deny-list" in records[3]["reasons"][0]
    # the table: a header and a line per record, aligned
    done = cli(env, "service", "log", "--home", str(home))
    lines = done.stdout.decode().splitlines()
    assert lines[0].split() == ["time", "kind", "peer", "technology", "measurement",
                                "tcb_status", "outcome", "serial", "reasons"]
    assert len(lines) == 5
    assert len({line.index("127.0.0.1") for line in lines[1:]}) == 1
    assert "accepted" in lines[1] and "refused" in lines[4]
    # --since: a future instant leaves nothing, an hour ago everything
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = cli(env, "service", "log", "--json", "--since", future, "--home", str(home))
    assert done.returncode == 0 and done.stdout == b""
    done = cli(env, "service", "log", "--json", "--since", "1h", "--home", str(home))
    assert len(done.stdout.decode().splitlines()) == 4


def test_the_log_tells_token_requests_from_certificate_requests(tmp_path, sim_home, sgx):
    """A token request and a certificate request (and a refusal of each) through a real
    ``serve`` with ``--token-lifetime``: the log shows each with its kind, ``--kind``
    picks one, and the token lives exactly that long."""
    env = environment(sim_home)
    home = tmp_path / "service"
    served = Served(env, "--home", str(home), "--trust-simulated", "--token-lifetime", "90m",
                    "--workers", "2")  # the workers' settings come through the environment
    try:
        status, body = served.token(sgx)
        assert status == 200, body
        claims = jwt.decode(json.loads(body)["token"],
                            jwk.KeySet.import_key_set(json.loads(
                                served.request("GET", "/.well-known/jwks.json")[1])),
                            algorithms=["ES384"]).claims
        assert claims["exp"] - claims["iat"] == 90 * 60
        status, body = served.certificate(sgx)
        assert status == 200, body
        assert served.request("POST", "/v1/attestation", b"{")[0] == 400
        assert served.request("POST", "/v1/certificate", b"junk")[0] == 400
    finally:
        assert served.stop() == 0

    done = cli(env, "service", "log", "--json", "--home", str(home))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert all(set(r) == LOG_KEYS for r in records)
    assert [(r["kind"], r["outcome"]) for r in records] == [
        ("token", "accepted"), ("certificate", "accepted"), ("token", "refused"),
        ("certificate", "refused")]
    assert records[0]["serial"] is None and records[1]["serial"]
    assert records[0]["technology"] == records[1]["technology"] == "sgx"
    assert records[0]["measurement"] == records[1]["measurement"]
    for kind in ("token", "certificate"):
        done = cli(env, "service", "log", "--json", "--kind", kind, "--home", str(home))
        assert [json.loads(line) for line in done.stdout.decode().splitlines()] == [
            r for r in records if r["kind"] == kind]
    lines = cli(env, "service", "log", "--home", str(home)).stdout.decode().splitlines()
    assert [line.split()[1] for line in lines] == ["kind", "token", "certificate", "token",
                                                   "certificate"]
    done = cli(env, "service", "log", "--kind", "csr", "--home", str(home))
    assert done.returncode == 2 and b"invalid choice: 'csr'" in done.stderr


def test_the_token_lifetime_is_bounded(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    for text, shown in (("59s", "59s"), ("8d", "8d"), ("169h", "169h"), ("10081m", "10081m")):
        assert main(["service", "serve", "--token-lifetime", text, *home]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "Traceback" not in error
        assert f"--token-lifetime: the token lifetime must be from 1 minute to 7 days, " \
               f"not {shown}" in error
    assert main(["service", "serve", "--token-lifetime", "soon", *home]) == 2
    assert not (tmp_path / "service.db").exists()  # refused before anything was opened


def test_serve_with_two_workers_and_the_home_from_the_environment(tmp_path, sim_home, sgx):
    env = environment(sim_home)
    env["ATTESTCALL_SERVICE_HOME"] = str(tmp_path / "from-env")
    served = Served(env, "--workers", "2", "--trust-simulated")
    try:
        for _ in range(3):
            status, body = served.certificate(sgx)
            assert status == 200, body
        status, body = served.request("GET", "/metrics")
        assert status == 200
        assert b'path="/v1/certificate",status="200"} 3.0' in body  # every worker's count
        assert served.request("GET", "/healthz")[0] == 200
    finally:
        assert served.stop() == 0  # SIGINT: a clean shutdown
    assert (tmp_path / "from-env" / "ca.key.pem").exists()
    done = cli(env, "service", "log", "--json")
    assert [json.loads(line)["outcome"] for line in done.stdout.decode().splitlines()] == [
        "accepted"] * 3


def test_serve_https_with_two_workers(tmp_path, sim_home, sgx):
    """``--tls-cert``/``--tls-key`` with ``--workers 2``: every worker serves HTTPS, the
    default public URL (the CRL distribution point) is https, plain HTTP gets nothing."""
    env = environment(sim_home)
    files = https_files(tmp_path / "https")
    served = Served(env, "--home", str(tmp_path / "service"), "--workers", "2",
                    "--trust-simulated", "--tls-cert", str(files.cert), "--tls-key",
                    str(files.key), trust=files.ca)
    try:
        assert served.scheme == "https"
        for _ in range(3):  # connections spread over the workers
            status, body = served.certificate(sgx)
            assert status == 200, body
            issued = x509.load_pem_x509_certificates(body)[0]
            points = issued.extensions.get_extension_for_class(x509.CRLDistributionPoints)
            assert points.value[0].full_name[0].value == f"{served.url}/v1/crl"
        assert served.request("GET", "/healthz") == (200, b'{"status":"ok"}')
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            exchange(served.port, "GET", "/healthz")  # no TLS: no answer
        assert "warning" not in served.errors()
    finally:
        assert served.stop() == 0  # SIGINT: a clean shutdown


@pytest.mark.parametrize("fault", ["only the certificate", "a missing key", "not a key",
                                   "an encrypted key", "a mismatched pair"])
def test_serve_refuses_a_bad_tls_pair_before_any_worker_starts(tmp_path, sim_home, fault):
    env = environment(sim_home)
    files = https_files(tmp_path / "https")
    other = https_files(tmp_path / "other", name="other")
    cert, key = {
        "only the certificate": (str(files.cert), None),
        "a missing key": (str(files.cert), str(tmp_path / "absent.pem")),
        "not a key": (str(files.cert), str(files.ca)),
        "an encrypted key": (str(files.cert), str(encrypted_key(files))),
        "a mismatched pair": (str(files.cert), str(other.key)),
    }[fault]
    expected = {
        "only the certificate": "needs both --tls-cert FILE and --tls-key FILE",
        "a missing key": "cannot read it: No such file or directory",
        "not a key": "not a PEM private key",
        "an encrypted key": "the key is encrypted",
        "a mismatched pair": "do not match",
    }[fault]
    args = ["service", "serve", "--home", str(tmp_path / "service"), "--listen",
            "127.0.0.1:0", "--workers", "2", "--tls-cert", cert]
    done = cli(env, *args, *(["--tls-key", key] if key else []))
    assert done.returncode == 2 and done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "service").exists()  # nothing started, nothing created


def test_served_connections_have_nagle_off():
    """serve's listening socket says it is TCP, so asyncio (uvicorn's transports) turns
    Nagle's algorithm off on every connection it accepts: with it on, an answer written in
    two parts (head, then body) waited for the client's delayed ACK, 40 ms a request."""

    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[int] = loop.create_future()

        class Accepting(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                accepted = transport.get_extra_info("socket")
                seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Accepting, sock=listening)
        try:
            _, writer = await asyncio.open_connection(*listening.getsockname())
            try:
                return await asyncio.wait_for(seen, TIMEOUT)
            finally:
                writer.close()
        finally:
            server.close()

    listening = _listen("127.0.0.1", 0)
    try:
        assert listening.proto == socket.IPPROTO_TCP
        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        listening.close()


def test_serve_refuses_a_broken_policy_and_a_busy_port(tmp_path, sim_home):
    env = environment(sim_home)
    policy = tmp_path / "policy.toml"
    policy.write_text("[nope]\n")
    done = cli(env, "service", "serve", "--home", str(tmp_path), "--listen", "127.0.0.1:0",
               "--policy", str(policy))
    assert done.returncode == 1 and b"unknown policy table [nope]" in done.stderr
    assert b"Traceback" not in done.stderr


def test_usage_errors(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    assert main(["service", "revoke", *home]) == 2
    assert "SERIAL or --measurement" in capsys.readouterr().err
    assert main(["service", "revoke", "ab", "--measurement", "cd", *home]) == 2
    assert main(["service", "revoke", "not-hex", *home]) == 2
    assert "not a hexadecimal serial" in capsys.readouterr().err
    assert main(["service", "revoke", "--measurement", "xyz", *home]) == 2
    assert main(["service", "serve", "--lifetime", "soon", *home]) == 2
    assert main(["service", "serve", "--workers", "0", *home]) == 2
    assert main(["service", "log", "--since", "yesterday", *home]) == 2
    assert main(["service"]) == 2


@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("90m", 5400), ("3600s", 3600),
                                           ("7d", 604800), ("45", 45)])
def test_durations(text, seconds):
    assert duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0h", "-1h", "1.5h", "h", "1w", ""])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_the_default_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTESTCALL_SERVICE_HOME", str(tmp_path / "a"))
    assert default_home() == tmp_path / "a"
    monkeypatch.delenv("ATTESTCALL_SERVICE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "attestcall" / "service"


def test_the_service_modules_load_only_for_the_service_command():
    code = ("import sys; from attestcall.cli import main; main(['include-dir']); "
            "print(sorted(m for m in sys.modules if m.startswith(('attestcall.service', "
            "'starlette', 'uvicorn', 'sqlalchemy', 'prometheus_client', "
            "'attestcall.cli.service'))))")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          timeout=TIMEOUT)
    assert done.stdout.decode().splitlines()[-1] == "[]"
