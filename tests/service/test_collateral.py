"""The fleet's collateral cache (attestcall.service.collateral) against a local fake PCS and
KDS that counts requests: fetched once, then served from the database (SQLite, and
PostgreSQL for two caches in one process); checked before it is kept; stale-if-error; the
upstream's failures and Retry-After honoured; offline; behind the verifier."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry

from attestcall.amd.fetch.items import vcek_item_key
from attestcall.amd.sim import snp as snp_sim
from attestcall.errors import CollateralError, CollateralMissing, CollateralUnavailable
from attestcall.intel.sim.sgx import load_state
from attestcall.intel.sim.sgx.collateral import collateral as sim_collateral
from attestcall.intel.sim.sgx.collateral import pck_crl
from attestcall.service.collateral import AmdSource, CollateralCache, IntelSource, Refresher
from attestcall.service.collateral_import import import_files
from attestcall.service.collateral_store import CollateralStore, Item, Record
from attestcall.service.storage import Storage
from attestcall.verifier.api import verify
from tests import paths
from tests.clock import Clock
from tests.fakes.collateral_server import CollateralServer, Route, serve_intel, signed_body
from tests.fakes.whitespace_der import ending_in_whitespace

DATA = paths.DATA
SGX_QUOTE = (DATA / "intel/sgx_quote_v3.bin").read_bytes()
SGX = json.loads((DATA / "intel/sgx_quote_v3.collateral.json").read_text())
TDX = json.loads((DATA / "intel/tdx_quote_v4.collateral.json").read_text())
REPORT = (DATA / "amd/milan_report_v2.bin").read_bytes()
VCEK = (DATA / "amd/milan_report_v2.vcek.der").read_bytes()
MILAN_CHAIN = (DATA / "amd/ask_ark_milan.pem").read_bytes()
MILAN_CRL = (DATA / "amd/crl_milan.der").read_bytes()  # AMD's: 2026-06-22 to 2026-08-08
IN_CRL = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
VCEK_PATH = (f"/vcek/v1/Milan/{REPORT[0x1A0:0x1E0].hex()}"
             "?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115")
JULY = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)  # inside the vectors' windows
TCB = Item("intel", "tcb", "sgx/00A067110000")
TCB_PATH = "/sgx/certification/v4/tcb?fmspc=00A067110000"


@pytest.fixture
def upstream() -> Iterator[CollateralServer]:
    with CollateralServer() as server:
        serve_intel(server, SGX, tee="sgx", fmspc="00A067110000", ca="processor")
        yield server


@pytest.fixture
def storage(tmp_path) -> Iterator[Storage]:
    with Storage.open(None, tmp_path / "home") as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock(JULY)


def cache_of(storage: Storage, upstream: CollateralServer, clock: Clock,
             **options) -> CollateralCache:
    return CollateralCache(storage, pccs=upstream.url, kds=upstream.url, clock=clock,
                           registry=CollectorRegistry(), **options)


def counted(cache: CollateralCache, name: str, kind: str = "tcb") -> float:
    counter = getattr(cache.metrics, name)
    return counter.labels("intel" if kind not in ("vcek", "cert_chain", "crl") else "amd",
                          kind)._value.get()


# ------------------------------------------------------------------ once, then the database


def test_an_item_is_fetched_once_then_served_from_the_database(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    record = cache.get(TCB)
    route = upstream.routes[TCB_PATH]
    assert record.body == route.body  # as the upstream served it, byte for byte
    assert dict(record.headers) == {"TCB-Info-Issuer-Chain":
                                    route.headers["TCB-Info-Issuer-Chain"]}
    assert record.source == upstream.url + TCB_PATH
    assert record.next_update == dt.datetime(2025, 7, 19, 10, 56, 11, tzinfo=dt.UTC)
    assert record.fetched_at == JULY and record.refresh_at == JULY + dt.timedelta(days=1)
    assert cache.get(TCB) == record
    another = cache_of(storage, upstream, clock)  # another replica on the same database
    assert another.get(TCB) == record
    assert upstream.requests == [TCB_PATH]
    assert (counted(cache, "misses"), counted(cache, "fetches"), counted(cache, "hits")) == \
        (1, 1, 1)
    assert counted(another, "hits") == 1 and counted(another, "fetches") == 0


def test_an_item_is_refreshed_once_due(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    cache.get(TCB)
    clock.advance(hours=23)
    cache.get(TCB)
    assert len(upstream.requests) == 1
    clock.advance(hours=2)
    assert cache.get(TCB).fetched_at == clock.now
    assert len(upstream.requests) == 2


def test_the_verifier_gets_its_collateral_from_the_cache(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    verdict = verify(SGX_QUOTE, collateral=IntelSource(cache), at=JULY)
    direct = verify(SGX_QUOTE, collateral=SGX, at=JULY)
    assert (verdict.tcb_status, verdict.advisories, verdict.reasons) == \
        (direct.tcb_status, direct.advisories, direct.reasons)
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert sorted(upstream.requests) == sorted([
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        "/sgx/certification/v4/rootcacrl", TCB_PATH, "/sgx/certification/v4/qe/identity"])
    verify(SGX_QUOTE, collateral=IntelSource(cache), at=JULY)
    assert len(upstream.requests) == 4


def test_many_threads_asking_at_once_make_one_request(storage, upstream, clock):
    upstream.routes[TCB_PATH].delay = 0.5  # the others arrive while the first one asks
    cache = cache_of(storage, upstream, clock)
    with ThreadPoolExecutor(16) as pool:
        records = list(pool.map(lambda _: cache.get(TCB), range(32)))
    assert len({r.body for r in records}) == 1
    assert upstream.requests == [TCB_PATH]


def test_two_caches_on_postgresql_make_one_request(pg_url, tmp_path, upstream, clock):
    """Two replicas' caches (their own holders and locks) on one PostgreSQL database, 12
    threads each, asking for every item of two quotes: one upstream request per item."""
    serve_intel(upstream, TDX, tee="tdx", fmspc="B0C06F000000", ca="platform")
    for route in upstream.routes.values():
        route.delay = 0.3
    items = [Item("intel", "pckcrl", "processor"), Item("intel", "pckcrl", "platform"),
             Item("intel", "rootcacrl"), TCB, Item("intel", "tcb", "tdx/B0C06F000000"),
             Item("intel", "qeidentity", "sgx"), Item("intel", "qeidentity", "tdx")]
    with Storage.open(pg_url, tmp_path) as one, Storage.open(pg_url, tmp_path) as two:
        caches = [cache_of(one, upstream, clock), cache_of(two, upstream, clock)]
        start = threading.Barrier(24)

        def work(index: int) -> list[bytes]:
            start.wait(30)
            cache = caches[index % 2]
            return [cache.get(item).body for item in items[index % 7:] + items[:index % 7]]

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(work, range(24)))
    assert len(upstream.requests) == len(set(upstream.requests)) == 7
    assert all(sorted(a) == sorted(answers[0]) for a in answers)


# ------------------------------------------------------------------ never poisoned


def garbage(upstream: CollateralServer) -> None:
    upstream.routes[TCB_PATH] = Route(b"<html>maintenance</html>")


def bad_signature(upstream: CollateralServer) -> None:
    upstream.routes[TCB_PATH] = Route(
        signed_body("tcbInfo", SGX["tcb_info"], SGX["qe_identity_signature"]),
        headers=upstream.routes[TCB_PATH].headers)


def server_error(upstream: CollateralServer) -> None:
    upstream.routes[TCB_PATH] = Route(b"oops", status=500)


def another_fmspc(upstream: CollateralServer) -> None:
    upstream.routes[TCB_PATH] = Route(signed_body("tcbInfo", TDX["tcb_info"],
                                                  TDX["tcb_info_signature"]),
                                      headers=upstream.routes[TCB_PATH].headers)


@pytest.mark.parametrize("failure", [server_error, garbage, bad_signature, another_fmspc])
def test_a_failing_upstream_never_poisons_the_cache(storage, upstream, clock, failure):
    good = upstream.routes[TCB_PATH]
    failure(upstream)
    cache = cache_of(storage, upstream, clock)
    with pytest.raises(CollateralUnavailable) as raised:
        cache.get(TCB)
    assert raised.value.retry_after == 10  # the fleet leaves the item alone a while
    assert cache.peek(TCB) is None
    assert counted(cache, "errors") == 1
    clock.advance(seconds=5)  # within the back-off: not asked again
    with pytest.raises(CollateralUnavailable, match="not asked again"):
        cache.get(TCB)
    assert len(upstream.requests) == 1
    upstream.routes[TCB_PATH] = good
    clock.advance(seconds=6)
    assert cache.get(TCB).body == good.body
    assert len(upstream.requests) == 2


def test_retry_after_is_honoured_across_replicas(storage, upstream, clock):
    good = upstream.routes[TCB_PATH]
    upstream.routes[TCB_PATH] = Route(b"slow down", status=429, headers={"Retry-After": "120"})
    cache, other = cache_of(storage, upstream, clock), cache_of(storage, upstream, clock)
    with pytest.raises(CollateralUnavailable, match="429") as raised:
        cache.get(TCB)
    assert raised.value.retry_after == 120
    upstream.routes[TCB_PATH] = good
    clock.advance(seconds=100)
    with pytest.raises(CollateralUnavailable) as raised:
        other.get(TCB)  # another replica honours the same Retry-After
    assert raised.value.retry_after == 20
    assert len(upstream.requests) == 1 and cache.peek(TCB) is None
    clock.advance(seconds=21)
    assert other.get(TCB).body == good.body
    assert len(upstream.requests) == 2


def test_a_missing_item_is_missing_and_backed_off(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    missing = Item("intel", "tcb", "sgx/00906ED50000")
    for _ in range(2):
        with pytest.raises(CollateralMissing, match="HTTP 404"):
            cache.get(missing)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("failure", [server_error, garbage, bad_signature])
def test_stale_if_error_serves_the_old_item_with_a_warning(storage, upstream, clock, caplog,
                                                         failure):
    cache = cache_of(storage, upstream, clock)
    kept = cache.get(TCB)
    failure(upstream)
    clock.advance(days=2)  # due for a refresh, and past its next update: still served
    with caplog.at_level(logging.WARNING, logger="attestcall.service.collateral"):
        assert cache.get(TCB) == kept
        assert cache.get(TCB) == kept  # backed off: no second request
    assert len(upstream.requests) == 2
    assert counted(cache, "stale") == 2 and counted(cache, "errors") == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert any("serving intel tcb sgx/00A067110000 stale" in w for w in warnings), warnings
    assert cache.peek(TCB) == kept


def test_due_items_are_refreshed_ahead_of_any_request(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    cache.get(TCB)
    another = cache_of(storage, upstream, clock)  # a second replica, on the same database
    assert cache.refresh_due() == another.refresh_due() == 0  # nothing due yet
    clock.advance(hours=25)
    assert cache.refresh_due() == 1
    assert another.refresh_due() == 0  # the fleet refreshed it once
    assert len(upstream.requests) == 2
    assert cache.peek(TCB).fetched_at == clock.now
    assert another.get(TCB).fetched_at == clock.now  # a request then finds it fresh
    assert len(upstream.requests) == 2
    assert counted(another, "misses") == 0


@pytest.mark.parametrize("failure", [server_error, garbage, bad_signature])
def test_a_failed_refresh_ahead_keeps_the_item_and_backs_off(storage, upstream, clock, failure):
    cache = cache_of(storage, upstream, clock)
    kept = cache.get(TCB)
    failure(upstream)
    clock.advance(hours=25)
    assert cache.refresh_due() == 0
    assert cache.refresh_due() == 0  # backed off: not asked again
    assert len(upstream.requests) == 2
    assert counted(cache, "errors") == 1 and counted(cache, "stale") == 0  # nothing served
    assert cache.get(TCB) == kept  # a request is then served the item kept, stale


def test_offline_refreshes_nothing(storage, upstream, clock):
    offline = cache_of(storage, upstream, clock, offline=True)
    route = upstream.routes[TCB_PATH]
    offline.put(TCB, route.body, route.headers)
    clock.advance(days=30)
    assert offline.refresh_due() == 0 and upstream.requests == []
    refresher = Refresher(offline, interval=0.01)
    refresher.start()  # offline: no thread at all
    assert refresher._thread is None


def test_the_refresher_thread_refreshes_in_rounds_and_stops(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    cache.get(TCB)
    clock.advance(hours=25)
    refresher = Refresher(cache, interval=0.01)
    refresher.start()
    try:
        for _ in range(3000):  # bounded: 30 s
            if len(upstream.requests) == 2 and refresher.rounds >= 2:
                break
            threading.Event().wait(0.01)
    finally:
        refresher.stop()
    assert not refresher._thread.is_alive()
    assert len(upstream.requests) == 2  # due once, refreshed once, over several rounds
    assert refresher.rounds >= 2


def test_an_older_answer_does_not_replace_a_newer_one(storage, upstream, clock, tmp_path,
                                                       caplog):
    state = load_state(tmp_path / "sim")
    fmspc = state.fmspc.hex().upper()
    path = f"/sgx/certification/v4/tcb?fmspc={fmspc}"
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    newer, older = (sim_collateral(state, issued=when)
                    for when in (issued, issued - dt.timedelta(days=3)))
    serve_intel(upstream, newer, tee="sgx", fmspc=fmspc, ca="platform")
    cache = cache_of(storage, upstream, clock, trust_simulated=True)
    cache.roots = lambda vendor: [state.root_cert]  # this test's own simulated platform
    item = Item("intel", "tcb", f"sgx/{fmspc}")
    kept = cache.get(item)
    serve_intel(upstream, older, tee="sgx", fmspc=fmspc, ca="platform")
    clock.advance(days=2)
    with caplog.at_level(logging.WARNING, logger="attestcall.service.collateral"):
        assert cache.get(item) == kept  # stale: the older answer is refused
    assert upstream.requests.count(path) == 2
    assert any("older than the one kept" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ offline


def test_offline_never_asks_and_serves_whatever_it_holds(storage, upstream, clock):
    offline = cache_of(storage, upstream, clock, offline=True)
    with pytest.raises(CollateralMissing, match="offline"):
        offline.get(TCB)
    route = upstream.routes[TCB_PATH]
    offline.put(TCB, route.body, route.headers)
    clock.advance(days=3650)  # far past its next update: freshness is the verifier's call
    assert offline.get(TCB).body == route.body
    assert upstream.requests == []
    assert counted(offline, "hits") == 1 and counted(offline, "misses") == 1


# ------------------------------------------------------------------ AMD


def test_the_snp_verifier_gets_a_missing_vcek_from_the_cache(storage, upstream, clock):
    upstream.routes[VCEK_PATH] = Route(VCEK)
    upstream.routes["/vcek/v1/Milan/cert_chain"] = Route(MILAN_CHAIN)
    upstream.routes["/vcek/v1/Milan/crl"] = Route(MILAN_CRL)
    cache = cache_of(storage, upstream, clock)
    for _ in range(2):
        verdict = verify(REPORT, collateral=AmdSource(cache, REPORT), at=IN_CRL)
        assert verdict.accepted, verdict.reasons
    assert sorted(upstream.requests) == ["/vcek/v1/Milan/cert_chain", "/vcek/v1/Milan/crl",
                                         VCEK_PATH]
    assert cache.peek(Item("amd", "vcek", VCEK_PATH.removeprefix("/vcek/v1/"))).body == VCEK
    assert cache.peek(Item("amd", "crl", "vcek/Milan")).body == MILAN_CRL


def test_the_services_snp_verification_checks_the_crl(storage, upstream, clock, tmp_path):
    """The cache's CRL is used: one past its nextUpdate, or one the ARK did not sign, makes
    the evidence unverifiable (never a silent pass); without the CRL upstream, likewise."""
    upstream.routes[VCEK_PATH] = Route(VCEK)
    upstream.routes["/vcek/v1/Milan/crl"] = Route(MILAN_CRL)
    cache = cache_of(storage, upstream, clock)
    late = dt.datetime(2026, 8, 8, tzinfo=dt.UTC)  # the CRL's nextUpdate
    with pytest.raises(CollateralError, match="CRL of ARK-Milan has expired"):
        verify(REPORT, collateral=AmdSource(cache, REPORT), at=late)
    genoa = MILAN_CRL.replace(b"ARK-Milan", b"ARK-Genoa")  # the cache refuses it
    upstream.routes["/vcek/v1/Milan/crl"] = Route(genoa)
    with Storage.open(None, tmp_path / "other") as other:
        with pytest.raises(CollateralError, match="not issued and signed by a trusted Milan"):
            verify(REPORT, collateral=AmdSource(cache_of(other, upstream, clock), REPORT),
                   at=IN_CRL)
    del upstream.routes["/vcek/v1/Milan/crl"]
    with Storage.open(None, tmp_path / "third") as third:
        with pytest.raises(CollateralMissing, match="crl"):
            verify(REPORT, collateral=AmdSource(cache_of(third, upstream, clock), REPORT),
                   at=IN_CRL)


def test_a_vcek_the_upstream_does_not_have_is_a_refusal(storage, upstream, clock):
    cache = cache_of(storage, upstream, clock)
    with pytest.raises(CollateralMissing, match="404"):
        verify(REPORT, collateral=AmdSource(cache, REPORT),
               at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))


# ------------------------------------------------------------------ the claim


def test_one_claim_at_a_time_and_back_off(storage):
    store = CollateralStore(storage)
    lease = dt.timedelta(seconds=30)
    assert store.claim(TCB, "a", JULY, lease).state == "claimed"
    held = store.claim(TCB, "b", JULY, lease)
    assert (held.state, held.until) == ("held", JULY + lease)
    assert store.claim(TCB, "b", JULY + lease, lease).state == "claimed"  # a's lease ran out
    store.release(TCB, "a", JULY + lease * 3, "a's late release")  # not a's claim any more
    assert store.claim(TCB, "c", JULY + lease, lease).state == "held"
    store.release(TCB, "b", JULY + lease * 2, "HTTP 500")
    blocked = store.claim(TCB, "c", JULY + lease, lease)
    assert (blocked.state, blocked.until, blocked.error) == ("blocked", JULY + lease * 2,
                                                             "HTTP 500")
    assert store.claim(TCB, "c", JULY + lease * 2, lease).state == "claimed"
    record = Record(TCB, b"{}", {"A": "b"}, JULY, JULY + lease * 10, JULY + lease * 5, "x")
    store.put(record, "c")
    assert store.get(TCB) == record
    assert store.claim(TCB, "d", JULY + lease * 4, lease).state == "fresh"
    assert store.claim(TCB, "d", JULY + lease * 5, lease).state == "claimed"  # due again


def test_a_simulated_vcek_is_checked_with_its_products_chain(storage, upstream, clock,
                                                             tmp_path_factory, tmp_path):
    """A VCEK no pinned ASK issued: the cache gets the product's chain (through itself,
    checked under the trusted ARK), then checks the VCEK with that ASK."""
    milan = snp_sim.load_state(tmp_path_factory.getbasetemp() / "attestcall-home").chain(
        snp_sim.product("milan"))
    vcek = milan.vcek_certificate(snp_sim.Tcb(1, 0, 5, 60),
                                  ec.generate_private_key(ec.SECP384R1()).public_key(),
                                  bytes(range(64)))
    key = vcek_item_key(vcek)
    upstream.routes[f"/vcek/v1/{key}"] = Route(vcek.public_bytes(Encoding.DER))
    upstream.routes["/vcek/v1/Milan/cert_chain"] = Route(
        milan.ask.public_bytes(Encoding.PEM) + milan.ark.public_bytes(Encoding.PEM))
    cache = cache_of(storage, upstream, clock, trust_simulated=True)
    cache.roots = lambda vendor: [milan.ark]
    assert cache.get(Item("amd", "vcek", key)).body == vcek.public_bytes(Encoding.DER)
    assert upstream.requests == [f"/vcek/v1/{key}", "/vcek/v1/Milan/cert_chain"]
    with Storage.open(None, tmp_path / "other") as other:  # a service without the ARK
        untrusting = cache_of(other, upstream, clock)
        with pytest.raises(CollateralUnavailable, match="not a trusted Milan ARK"):
            untrusting.get(Item("amd", "vcek", key))
        assert untrusting.peek(Item("amd", "vcek", key)) is None


def test_a_process_sees_what_another_stored_within_a_minute(storage, upstream, clock):
    """A hit rarely reads the database: a process reuses what it read for MEMO_TTL at most,
    so an import (or another replica's refresh) is seen a minute later at the latest."""
    cache = cache_of(storage, upstream, clock)
    fetched = cache.get(TCB)
    route = upstream.routes[TCB_PATH]
    imported = cache_of(storage, upstream, clock, offline=True).put(TCB, route.body,
                                                                    route.headers)
    assert imported.source == "import" and fetched.source != "import"
    clock.advance(seconds=59)
    assert cache.get(TCB) == fetched
    clock.advance(seconds=2)
    assert cache.get(TCB).source == "import"
    assert upstream.requests == [TCB_PATH]


def test_a_der_crl_file_whose_signature_ends_in_a_whitespace_byte_imports_whole(
        storage, tmp_path, tmp_path_factory):
    state = load_state(tmp_path_factory.getbasetemp() / "attestcall-home")
    der = ending_in_whitespace(lambda: pck_crl(state).public_bytes(Encoding.DER))
    crl, ca = tmp_path / "pck.crl", tmp_path / "platform-ca.pem"
    crl.write_bytes(der)
    ca.write_bytes(state.platform_ca_cert.public_bytes(Encoding.PEM))
    cache = CollateralCache(storage, offline=True, trust_simulated=True,
                            registry=CollectorRegistry())
    [(_, record)] = import_files([crl, ca], cache)
    assert record.item == Item("intel", "pckcrl", "platform") and record.body == der
