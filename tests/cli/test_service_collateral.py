"""``attestcall service collateral import`` and ``list``, and ``service serve --offline``,
through the real command line: an air-gapped fleet loads collateral files, and clients
(dcap-qvl, ``attestcall verify``) get them from the service without any upstream."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.amd.sim import snp as snp_sim
from attestcall.intel.sim import sgx as sgx_sim
from attestcall.intel.sim.sgx.collateral import collateral as sim_collateral
from attestcall.intel.sim.sgx.collateral import pck_crl
from tests import paths
from tests.amd.fetch.test_items import ark_crl
from tests.service.helpers import TIMEOUT, Served, cli, environment, exchange

DATA = paths.DATA
FILES = [DATA / "intel/sgx_quote_v3.collateral.json", DATA / "intel/tdx_quote_v4.collateral.json",
         DATA / "amd/milan_report_v2.vcek.der", DATA / "amd/ask_ark_milan.pem",
         DATA / "amd/crl_milan.der"]
CHIP_ID = (DATA / "amd/milan_report_v2.bin").read_bytes()[0x1A0:0x1E0].hex()
VCEK_KEY = f"Milan/{CHIP_ID}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
IMPORTED = {
    ("intel", "pckcrl", "processor", "2025-07-19T10:23:18Z"),
    ("intel", "pckcrl", "platform", "2025-07-19T10:00:35Z"),
    ("intel", "rootcacrl", "", "2026-04-03T11:21:57Z"),
    ("intel", "tcb", "sgx/00A067110000", "2025-07-19T10:56:11Z"),
    ("intel", "tcb", "tdx/B0C06F000000", "2025-07-19T10:16:03Z"),
    ("intel", "qeidentity", "sgx", "2025-07-19T10:01:18Z"),
    ("intel", "qeidentity", "tdx", "2025-07-19T10:32:27Z"),
    ("amd", "vcek", VCEK_KEY, "2030-04-03T19:23:43Z"),
    ("amd", "cert_chain", "vcek/Milan", "2045-10-22T17:23:05Z"),
    ("amd", "crl", "vcek/Milan", "2026-08-08T00:00:00Z"),  # AMD's CRL serves both families
    ("amd", "crl", "vlek/Milan", "2026-08-08T00:00:00Z"),
}


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "attestcall-home"


@pytest.fixture
def env(sim_home, tmp_path) -> dict[str, str]:
    env = environment(sim_home)
    env["ATTESTCALL_CACHE"] = str(tmp_path / "client-cache")
    return env


def listed(env: dict[str, str], home: Path) -> list[dict]:
    done = cli(env, "service", "collateral", "list", "--json", "--home", str(home))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def refused(env: dict[str, str], home: Path, *files: Path | str, reason: str,
            options: tuple[str, ...] = ()) -> None:
    """The import fails with one line naming ``reason``, and stores nothing."""
    before = listed(env, home)
    done = cli(env, "service", "collateral", "import", "--home", str(home), *options,
               *map(str, files))
    assert done.returncode == 1, done.stdout
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attestcall: "), lines
    assert re.search(reason, lines[0]), lines[0]
    assert "Traceback" not in done.stderr.decode()
    assert listed(env, home) == before


def test_import_list_then_serve_offline(env, tmp_path):
    home = tmp_path / "service"
    done = cli(env, "service", "collateral", "import", "--home", str(home), *map(str, FILES))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == len(IMPORTED)
    assert f"imported intel tcb sgx/00A067110000 from {FILES[0]} (next update " \
        "2025-07-19T10:56:11Z)" in lines
    records = listed(env, home)
    assert {(r["vendor"], r["kind"], r["key"],
             dt.datetime.fromisoformat(r["next_update"]).strftime("%Y-%m-%dT%H:%M:%SZ"))
            for r in records} == IMPORTED
    assert {r["source"] for r in records} == {"import"}
    table = cli(env, "service", "collateral", "list", "--home", str(home))
    rows = table.stdout.decode().splitlines()
    assert rows[0].split() == ["vendor", "kind", "key", "source", "fetched", "next", "update"]
    assert any(row.split()[:3] == ["intel", "tcb", "sgx/00A067110000"] for row in rows)
    assert len(rows) == len(IMPORTED) + 1

    # No upstream at all: --pccs and --kds point nowhere, and --offline never asks.
    nowhere = "http://127.0.0.1:9"
    served = Served(env, "--home", str(home), "--offline", "--pccs", nowhere, "--kds", nowhere)
    try:
        async def fetching() -> dcap_qvl.QuoteCollateralV3:
            return await dcap_qvl.get_collateral(served.url, quote)

        quote = (DATA / "intel/sgx_quote_v3.bin").read_bytes()
        collateral = asyncio.run(fetching())
        at = int(dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC).timestamp())
        assert dcap_qvl.verify(quote, collateral, at).status == \
            "ConfigurationAndSWHardeningNeeded"
        for args in (("--pccs", served.url, "--at", "2025-07-01T00:00:00Z",
                      str(DATA / "intel/tdx_quote_v4.bin")),
                     ("--kds", served.url, "--at", "2026-07-01T00:00:00Z",
                      str(DATA / "amd/milan_report_v2.bin"))):
            verified = subprocess.run([sys.executable, "-m", "attestcall", "verify", "--json",
                                       *args], env=env, capture_output=True, text=True,
                                      timeout=TIMEOUT)
            assert verified.returncode == 0, verified.stderr
            assert json.loads(verified.stdout)["accepted"]
        status, _, body = exchange(served.port, "GET", "/vcek/v1/Genoa/cert_chain")
        assert status == 404 and b"offline" in body
        assert "upstream" not in served.errors()  # nothing was ever asked of one
    finally:
        served.stop()


def test_what_is_not_collateral_is_refused_and_nothing_is_stored(env, tmp_path, sim_home):
    home = tmp_path / "service"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a certificate")
    refused(env, home, junk, reason=r"junk\.bin: not collateral")
    refused(env, home, tmp_path / "absent.json", reason="cannot read .*absent.json")
    report = DATA / "amd/milan_report_v2.bin"
    refused(env, home, FILES[0], report, reason="milan_report_v2.bin: not collateral")
    # A signature that does not verify, next to a good file: neither is stored.
    fields = json.loads(FILES[1].read_text())
    fields["tcb_info"] = fields["tcb_info"].replace('"version":3', '"version": 3')
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(fields))
    refused(env, home, FILES[0], tampered, reason="tampered.json: intel tcb tdx/B0C06F000000 "
            "is refused: the TCB info signature does not verify")
    bad = tmp_path / "bad.json"
    bad.write_text('{"tcb_info": 1}')
    refused(env, home, bad, reason="bad.json: not QuoteCollateralV3 collateral")
    # A PCK certificate is served by its platform's query, not imported alone.
    state = sgx_sim.load_state(sim_home)
    pck = tmp_path / "pck.pem"
    pck.write_bytes(state.pck_cert.public_bytes(Encoding.PEM))
    refused(env, home, pck, reason="a PCK certificate")


def test_simulated_collateral_needs_trust_simulated(env, tmp_path, sim_home):
    home = tmp_path / "service"
    state = sgx_sim.load_state(sim_home)
    document = tmp_path / "sim.json"
    document.write_text(json.dumps(sim_collateral(state)))
    refused(env, home, document, reason="does not end at a trusted Intel root")
    # A lone PCK CRL (PEM) with the certificates of its issuer chain.
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    crl = tmp_path / "platform.crl.pem"
    crl.write_bytes(pck_crl(state, issued).public_bytes(Encoding.PEM))
    refused(env, home, crl, reason="issuer chain is not given",
            options=("--trust-simulated",))
    issuers = tmp_path / "issuers.pem"
    issuers.write_bytes(state.platform_ca_cert.public_bytes(Encoding.PEM)
                        + state.root_cert.public_bytes(Encoding.PEM))
    milan = snp_sim.load_state(sim_home).chain(snp_sim.product("milan"))
    amd_crl = tmp_path / "ark.crl"
    amd_crl.write_bytes(ark_crl(milan))
    done = cli(env, "service", "collateral", "import", "--home", str(home), "--trust-simulated",
               str(document), str(crl), str(issuers), str(amd_crl))
    assert done.returncode == 0, done.stderr
    kept = {(r["vendor"], r["kind"], r["key"]) for r in listed(env, home)}
    fmspc = state.fmspc.hex().upper()
    assert kept == {("intel", "pckcrl", "platform"), ("intel", "rootcacrl", ""),
                    ("intel", "tcb", f"sgx/{fmspc}"), ("intel", "qeidentity", "sgx"),
                    ("amd", "crl", "vcek/Milan"), ("amd", "crl", "vlek/Milan")}


def test_collateral_needs_an_action(env, tmp_path):
    done = cli(env, "service", "collateral")
    assert done.returncode == 2
    assert b"choose an action: import or list" in done.stderr
