"""The fleet's collateral cache: Intel and AMD collateral kept in the service database,
shared by every replica, each item fetched from its upstream once.

:meth:`CollateralCache.get` answers an :class:`Item` (``intel tcb sgx/00A067110000``,
``amd vcek Milan/...``):

- from the database while it is fresh, that is before its ``refresh_at``: a day after it
  was fetched, or half way to its own next update if that comes sooner (a *hit*; a process
  keeps what it read for a minute at most, so a hit rarely reads the database);
- otherwise (a *miss*) from the upstream — ``--pccs`` (default Intel's PCS) for Intel,
  ``--kds`` (default AMD's KDS) for AMD — once per item for the whole fleet: the fetch is
  claimed in the database (:mod:`attestcall.service.collateral_store`), and in each process
  one thread per item asks while the others wait for it. A replica that finds another's
  claim serves the item it has if it is still before its next update, and otherwise waits
  (polling, bounded) for the other to store it;
- every answer is checked before it is stored (:mod:`attestcall.intel.fetch.items`,
  :mod:`attestcall.amd.fetch.items`: it parses, its signature verifies under its issuer
  chain to the pinned Intel or AMD root, it is the item asked for, it is not older than
  the one kept). A 5xx, a 429, garbage or a bad signature is never stored;
- when the upstream fails, the item kept is served anyway (*stale*, with a warning in the
  log), and the item is not asked for again before a back-off: the upstream's Retry-After
  on a 429, else ``failure_backoff``. With nothing kept, the caller gets
  :class:`CollateralUnavailable` (503), or :class:`CollateralMissing` when the upstream
  has no such item (404);
- ``offline``: nothing is ever fetched; what is kept (fetched earlier or imported) is
  served whatever its age — freshness is the verifier's decision, as in PCCS's offline
  mode — and what is not is :class:`CollateralMissing`.

Hits, misses, upstream fetches, upstream errors and stale serves are counted in the
service's Prometheus registry. :class:`IntelSource` and :class:`AmdSource` put the cache
behind the verifier's collateral interfaces.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter

from attestcall import fetch
from attestcall.amd.fetch import items as amd_items
from attestcall.amd.fetch.kds import AMD_KDS_URL, request_paths
from attestcall.amd.fetch.source import TableSource, VcekRequest
from attestcall.amd.formats.certs import load_certificate, load_pem_certificates
from attestcall.amd.formats.crl import load_crl
from attestcall.amd.roots import amd_arks
from attestcall.errors import (
    AttestcallError,
    CollateralError,
    CollateralMissing,
    CollateralUnavailable,
)
from attestcall.intel.fetch import items as intel_items
from attestcall.intel.fetch.source import IssuedCrl, SignedText
from attestcall.lru import Lru
from attestcall.service.collateral_store import IMPORT, CollateralStore, Item, Record
from attestcall.service.storage import Storage
from attestcall.tees import registry

LOG = logging.getLogger("attestcall.service.collateral")

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
VENDORS = ("intel", "amd")
REFRESH_INTERVAL = timedelta(hours=24)  # PCCS refreshes its cache daily too
MIN_REFRESH = timedelta(minutes=1)  # an item past its next update is not asked for faster
FAILURE_BACKOFF = 10.0  # seconds the fleet leaves an item alone after its upstream failed
DEFAULT_RETRY_AFTER = 60.0  # seconds, after a 429 that did not say
REFRESH_CHECK = 300.0  # seconds between a replica's looks for collateral due a refresh
LEASE = timedelta(seconds=fetch.DEFAULT_TIMEOUT + 10)  # a fetch's claim, held at most
WAIT = LEASE.total_seconds() + 5  # seconds a request waits for another's fetch
MEMO_TTL = timedelta(seconds=60)  # a process reuses a record it read this long at most
_MISSING = "missing: "  # prefixes a back-off's error when the upstream has no such item


def _now() -> datetime:
    return datetime.now(UTC)


class CacheMetrics:
    """The cache's counters, by vendor and kind."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        labels = ["vendor", "kind"]

        def counter(name: str, text: str) -> Counter:
            return Counter(f"attestcall_collateral_{name}", text, labels, registry=registry)

        self.hits = counter("hits", "Collateral served from the database")
        self.misses = counter("misses", "Collateral not fresh in the database when asked for")
        self.fetches = counter("upstream_fetches", "Requests made to a collateral upstream")
        self.errors = counter("upstream_errors",
                              "Upstream requests that failed or whose answer was refused")
        self.stale = counter("stale_serves",
                             "Collateral served past its refresh time because the upstream "
                             "failed")


class CollateralCache:
    """Collateral for one replica, kept in ``storage`` (module documentation).

    ``pccs``/``kds``: the upstreams (None: Intel's PCS, AMD's KDS). ``trust_simulated``:
    the simulated roots of this machine also sign acceptable collateral. ``clock``: "now"
    (tests). ``registry``: where the counters go."""

    def __init__(self, storage: Storage, *, pccs: str | None = None, kds: str | None = None,
                 offline: bool = False, trust_simulated: bool = False,
                 clock: Callable[[], datetime] = _now,
                 registry: CollectorRegistry | None = None,
                 refresh_interval: timedelta = REFRESH_INTERVAL,
                 failure_backoff: float = FAILURE_BACKOFF, lease: timedelta = LEASE,
                 wait: float = WAIT, timeout: float = fetch.DEFAULT_TIMEOUT) -> None:
        self.store = CollateralStore(storage)
        self.upstreams = {"intel": pccs or INTEL_PCS_URL, "amd": kds or AMD_KDS_URL}
        for base in self.upstreams.values():
            fetch.check_url(base)
        self.offline = offline
        self.trust_simulated = trust_simulated
        self.clock = clock
        self.metrics = CacheMetrics(registry)
        self.refresh_interval = refresh_interval
        self.failure_backoff = failure_backoff
        self.lease = lease
        self.wait = wait
        self.timeout = timeout
        self.holder = uuid.uuid4().hex
        self._locks: dict[Item, threading.Lock] = {}
        self._guard = threading.Lock()
        self._memo: dict[Item, tuple[Record, datetime]] = {}  # item -> (record, until)

    # -- what the cache holds -----------------------------------------------------------

    def records(self) -> list[Record]:
        return self.store.records()

    def peek(self, item: Item) -> Record | None:
        """The item as kept, whatever its age; never fetches or counts."""
        return self.store.get(item)

    def url(self, item: Item) -> str:
        """Where the item's upstream serves it."""
        if item.vendor == "intel":
            return intel_items.url(self.upstreams["intel"], item.kind, item.key)
        if item.vendor == "amd":
            return amd_items.url(self.upstreams["amd"], item.kind, item.key)
        raise CollateralError(f"unknown collateral vendor {item.vendor!r}")

    # -- checking -------------------------------------------------------------------------

    def roots(self, vendor: str) -> list[x509.Certificate]:
        """Roots trusted beside the pinned ones: this machine's simulated roots, when
        simulated evidence is trusted."""
        if not self.trust_simulated:
            return []
        tee = registry().by_name("sgx" if vendor == "intel" else "snp")
        if tee is None or tee.simulated_roots is None:
            return []
        return list(tee.simulated_roots())

    def check(self, item: Item, body: bytes, headers: Mapping[str, str],
              signers: Sequence[x509.Certificate] = ()) -> Any:
        """The item's answer checked on its own (``signers``: ASKs to try for a VCEK)."""
        if item.vendor == "intel":
            return intel_items.check(item.kind, item.key, body, headers, self.roots("intel"))
        if item.vendor == "amd":
            if item.kind == "vcek":
                signers = [*signers, *self._kept_asks(item.key.split("/", 1)[0])]
            return amd_items.check(item.kind, item.key, body, headers, self.roots("amd"),
                                   signers)
        raise CollateralError(f"unknown collateral vendor {item.vendor!r}")

    def _kept_asks(self, product: str) -> list[x509.Certificate]:
        """The ASK of the product's cert_chain item, if kept (for simulated VCEKs)."""
        record = self.store.get(Item("amd", "cert_chain", f"vcek/{product}"))
        if record is None:
            return []
        try:
            return load_pem_certificates(record.body)[:1]
        except CollateralError:
            return []

    def refresh_at(self, fetched: datetime, next_update: datetime) -> datetime:
        """When an item fetched at ``fetched`` is due again: a refresh interval later, or
        half way to its next update if that is sooner (never sooner than MIN_REFRESH)."""
        interval = min(self.refresh_interval, (next_update - fetched) / 2)
        return fetched + max(interval, MIN_REFRESH)

    def put(self, item: Item, body: bytes, headers: Mapping[str, str],
            source: str = IMPORT, signers: Sequence[x509.Certificate] = ()) -> Record:
        """Check an answer and keep it (``collateral import``), replacing what is kept."""
        checked = self.check(item, body, headers, signers)
        now = self.clock()
        record = Record(item, checked.body, checked.headers, now, checked.next_update,
                        self.refresh_at(now, checked.next_update), source)
        self.store.put(record)
        return self._remember(record, now)

    # -- getting --------------------------------------------------------------------------

    def get(self, item: Item) -> Record:
        """The item (module documentation); :class:`CollateralMissing`,
        :class:`CollateralUnavailable` or a ``StorageError`` when it cannot be had."""
        labels = (item.vendor, item.kind)
        now = self.clock()
        memo = self._memo.get(item)
        if memo is not None and now < memo[1]:
            self.metrics.hits.labels(*labels).inc()
            return memo[0]
        record = self.store.get(item)
        if record is not None and (self.offline or now < record.refresh_at):
            self.metrics.hits.labels(*labels).inc()
            return self._remember(record, now)
        self.metrics.misses.labels(*labels).inc()
        if self.offline:
            raise CollateralMissing(
                f"{item} is not in the collateral cache and the service is offline (import "
                "it with `attestcall service collateral import`)")
        lock = self._lock(item)
        if not lock.acquire(timeout=self.wait):
            return self._stale_or_raise(item, record, CollateralUnavailable(
                f"{item}: timed out waiting for another request fetching it"))
        try:
            return self._refresh(item, record)
        finally:
            lock.release()

    def _remember(self, record: Record, now: datetime) -> Record:
        """Keep ``record`` in this process until it is due, for MEMO_TTL at most (so that
        what another replica or an import stored is seen within a minute)."""
        until = now + MEMO_TTL
        if not self.offline:
            until = min(until, record.refresh_at)
        self._memo[record.item] = (record, until)
        return record

    def _lock(self, item: Item) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(item, threading.Lock())

    def _refresh(self, item: Item, record: Record | None) -> Record:
        """Fetch the item, or wait for whoever fetches it (bounded)."""
        deadline = time.monotonic() + self.wait
        pause = 0.02
        while True:
            now = self.clock()
            claim = self.store.claim(item, self.holder, now, self.lease)
            if claim.state == "fresh":
                kept = self.store.get(item)
                if kept is not None:
                    return self._remember(kept, now)
                continue
            if claim.state == "claimed":
                try:
                    return self._fetch(item, record, now)
                except CollateralError as error:
                    return self._stale_or_raise(item, record, error)
            if claim.state == "blocked":
                return self._stale_or_raise(item, record, _blocked_error(item, claim, now))
            # held by another replica or process
            if record is not None and now < record.next_update:
                return record  # still valid: the other's refresh will replace it
            if time.monotonic() > deadline:
                return self._stale_or_raise(item, record, CollateralUnavailable(
                    f"{item}: timed out waiting for another replica fetching it"))
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
            record = self.store.get(item) or record

    def _fetch(self, item: Item, record: Record | None, now: datetime) -> Record:
        """Ask the upstream (the claim is ours); keep a good answer, else back off and
        raise what the caller is to be told."""
        url = self.url(item)
        labels = (item.vendor, item.kind)
        self.metrics.fetches.labels(*labels).inc()
        try:
            answer = fetch.get(url, timeout=self.timeout)
            checked = self._check_fetched(item, answer)
            if record is not None and checked.next_update < record.next_update:
                raise CollateralError(
                    f"the answer is older than the one kept (next update "
                    f"{_iso(checked.next_update)}, before {_iso(record.next_update)})")
        except CollateralError as exc:
            self.metrics.errors.labels(*labels).inc()
            error, delay = self._failure(item, url, exc)
            blocked = now + timedelta(seconds=delay) if delay > 0 else None
            prefix = _MISSING if isinstance(error, CollateralMissing) else ""
            self.store.release(item, self.holder, blocked, prefix + str(error))
            LOG.warning("collateral upstream failed for %s: %s", item, error)
            raise error from None
        except BaseException:
            self.store.release(item, self.holder, None, None)
            raise
        fetched = self.clock()
        kept = Record(item, checked.body, checked.headers, fetched, checked.next_update,
                      self.refresh_at(fetched, checked.next_update), url)
        self.store.put(kept, self.holder)
        return self._remember(kept, fetched)

    # -- refreshing ahead ----------------------------------------------------------------

    def refresh_due(self) -> int:
        """Fetch again every kept item that is due (past its refresh time), before anyone
        asks for it: the :class:`Refresher`'s round. An item another request or replica is
        fetching, or that is backed off after a failure, is left to them; a failure is
        logged and backs the item off as a request's would (the item kept stays served).
        Offline, nothing. The number of items refreshed."""
        if self.offline:
            return 0
        refreshed = 0
        for record in self.store.records():
            now = self.clock()
            if now < record.refresh_at:
                continue
            lock = self._lock(record.item)
            if not lock.acquire(blocking=False):
                continue  # a request of this process is fetching it
            try:
                if self.store.claim(record.item, self.holder, now,
                                    self.lease).state != "claimed":
                    continue  # refreshed, being fetched, or backed off: by someone else
                self._fetch(record.item, record, now)
                refreshed += 1
            except CollateralError:
                pass  # logged by _fetch, and backed off
            finally:
                lock.release()
        return refreshed

    def _check_fetched(self, item: Item, answer: fetch.Response) -> Any:
        try:
            return self.check(item, answer.body, answer.headers)
        except amd_items.UnknownIssuer:
            pass
        # A VCEK whose ASK is not pinned (a simulated chip): its product's chain first.
        chain = self.get(Item("amd", "cert_chain", f"vcek/{item.key.split('/', 1)[0]}"))
        return self.check(item, answer.body, answer.headers,
                          load_pem_certificates(chain.body)[:1])

    def _failure(self, item: Item, url: str,
                 exc: CollateralError) -> tuple[CollateralError, float]:
        """What to tell the caller about a failed fetch, and for how long to back off."""
        delay = self.failure_backoff
        status = exc.status if isinstance(exc, fetch.HttpStatusError) else None
        if status == 404:
            return CollateralMissing(f"{url}: the upstream has no such item (HTTP 404)"), delay
        if isinstance(exc, CollateralUnavailable):
            error: CollateralError = exc
            if status == 429:
                delay = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            elif exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
        else:
            message = str(exc) if str(exc).startswith(url) else f"{url}: {exc}"
            error = CollateralUnavailable(f"the upstream's answer was refused: {message}")
        error.retry_after = delay if delay > 0 else None  # type: ignore[attr-defined]
        return error, delay

    def _stale_or_raise(self, item: Item, record: Record | None,
                        error: CollateralError) -> Record:
        if record is None:
            raise error
        self.metrics.stale.labels(item.vendor, item.kind).inc()
        LOG.warning("serving %s stale (fetched %s from %s, next update %s): %s", item,
                    _iso(record.fetched_at), record.source, _iso(record.next_update), error)
        return record


class Refresher:
    """A replica's background thread that refreshes due collateral every ``interval``
    seconds (:meth:`CollateralCache.refresh_due`), so that requests find it fresh rather
    than wait for the upstream. Every replica runs one; their claims in the database make
    one fetch per item for the fleet."""

    def __init__(self, cache: CollateralCache, interval: float = REFRESH_CHECK):
        self.cache = cache
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def start(self) -> None:
        if self._thread is None and not self.cache.offline:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="attestcall-collateral-refresher")
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                refreshed = self.cache.refresh_due()
            except Exception:  # noqa: BLE001 - a database outage must not end the thread
                LOG.warning("refreshing the collateral cache failed", exc_info=True)
            else:
                if refreshed:
                    LOG.info("refreshed %d collateral items ahead of need", refreshed)
            self.rounds += 1


def _blocked_error(item: Item, claim: Any, now: datetime) -> CollateralError:
    text = claim.error or "the upstream failed"
    if text.startswith(_MISSING):
        return CollateralMissing(text.removeprefix(_MISSING))
    error = CollateralUnavailable(f"{text} (not asked again for {item} before "
                                  f"{_iso(claim.until)})")
    error.retry_after = max((claim.until - now).total_seconds(), 1.0)
    return error


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- the verifier's side


_answers: Lru[tuple[str, bytes, str], Any] = Lru(64)  # a kept answer -> the verifier's form


class IntelSource:
    """The cache as the Intel verifier's collateral source
    (:class:`attestcall.intel.fetch.source.CollateralSource`). Each kept answer is put in
    the verifier's form once (the same bytes give the same strings, which the verifier's
    own caches key on)."""

    def __init__(self, cache: CollateralCache) -> None:
        self.cache = cache

    def _answer(self, kind: str, key: str, convert: Callable[[Record], Any]) -> Any:
        record = self.cache.get(Item("intel", kind, key))
        chain = next(iter(record.headers.values()), "")
        return _answers.get_or_create((kind, record.body, chain), lambda: convert(record))

    def pck_crl(self, ca: str) -> IssuedCrl:
        return self._answer("pckcrl", intel_items.pckcrl_key(ca),  # type: ignore[no-any-return]
                            lambda r: intel_items.issued_crl(r.body, r.headers))

    def root_ca_crl(self) -> str:
        return self._answer("rootcacrl", "", lambda r: r.body.hex())  # type: ignore[no-any-return]

    def tcb_info(self, tee: str, fmspc: str) -> SignedText:
        return self._answer(  # type: ignore[no-any-return]
            "tcb", intel_items.tcb_key(tee, fmspc),
            lambda r: intel_items.signed_text("tcb", r.body, r.headers))

    def qe_identity(self, tee: str) -> SignedText:
        return self._answer(  # type: ignore[no-any-return]
            "qeidentity", intel_items.qe_key(tee),
            lambda r: intel_items.signed_text("qeidentity", r.body, r.headers))


class AmdSource:
    """The cache as the SNP verifier's certificate source
    (:class:`attestcall.amd.fetch.source.CertSource`) for one piece of evidence: what the
    evidence's certificate table (which the verifier always reads) and the pinned keys do
    not give — the VCEK, a product's ASK/ASVK — comes from the cache."""

    def __init__(self, cache: CollateralCache, evidence: bytes) -> None:
        self.cache = cache
        try:
            self.table = TableSource.from_evidence(evidence)
        except AttestcallError:
            self.table = TableSource([])
        self.vlek = len(evidence) > 0x48 and evidence[0x48] & 0x1C == 0x04  # SIGNING_KEY 1

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        if self.table.vceks(request):
            return []
        misses = []
        for path in request_paths(request):
            key = path.removeprefix("/vcek/v1/")
            try:
                record = self.cache.get(Item("amd", "vcek", key))
            except CollateralMissing as exc:
                misses.append(str(exc))
                continue
            return [load_certificate(record.body)]
        raise CollateralMissing("; ".join(misses))

    def vleks(self) -> Sequence[x509.Certificate]:
        return []  # KDS serves no VLEK by chip: the certificate table carries it

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        if self.table.signing_cas(product) or product is None:
            return []
        try:
            key = amd_items.family_key("vlek" if self.vlek else "vcek", product)
            record = self.cache.get(Item("amd", "cert_chain", key))
            return load_pem_certificates(record.body)[:1]
        except CollateralError:
            return []  # the pinned ASKs may do; the appraisal says so if not

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        return []  # the trusted ARKs are pinned (and simulated ones given as roots)

    revocation_required = True  # an AMD ARK's CRL is always had (a simulated one's locally)

    def crls(self, family: str, product: str | None,
             ark: x509.Certificate) -> Sequence[x509.CertificateRevocationList]:
        """The ARK's CRL from the cache (KDS's ``/{family}/v1/{product}/crl``) when the
        chain ends at one of AMD's ARKs; none for another (a simulated ARK's CRL comes
        from the simulator)."""
        if product is None or ark not in amd_arks():
            return []
        record = self.cache.get(Item("amd", "crl", amd_items.family_key(family, product)))
        return [load_crl(record.body)]
