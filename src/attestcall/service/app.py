"""The attestation service over HTTP: an ASGI application (Starlette's router, requests and
responses) around the sans-I/O pieces.

Endpoints (every one safe to expose; administration goes through the CLI and the database):

    GET  /v1/challenge    {"challenge": base64url of 32 bytes, "expires_at": ISO 8601 UTC}
    POST /v1/certificate  a PKCS#10 CSR (DER application/pkcs10, or PEM) -> 200 with the
                          issued certificate and the CA (application/pem-certificate-chain);
                          403 refused, 400 bad input, 408 body too slow, 413 over 1 MiB,
                          503 database or collateral service down,
                          each an RFC 9457 problem document
    POST /v1/attestation  {"evidence", "technology"?, "challenge"?, "nonce"?} (JSON) -> 200
                          {"token": an EAR JWT signed ES384} for any usable evidence,
                          accepted or not (its ear.status says); 400 bad input (SEV key
                          material among it), 403 challenge unknown or used, 408, 413, 503
    GET  /.well-known/jwks.json  the key that verifies the tokens (JWK Set)
    GET  /v1/ca           the CA certificate (PEM)
    GET  /v1/crl          the CRL (DER), signed now, next update CRL_VALIDITY later
    GET  /healthz         200 when the database answers, else 503 (a problem document)
    GET  /metrics         Prometheus exposition
    GET  /openapi.json    this protocol, as OpenAPI 3.1

A certificate request goes through :func:`attestcall.service.csr.read_csr`, the single-use
challenge (consumed in the database), the key binding, ``attestcall.verify`` with the
policy, the deny-list, the CA's signature and one transaction recording the certificate
with its audit record. Every attempt that reaches the service, accepted or refused, is in
the audit log, with the peer's address; only a database that cannot be reached leaves none
(the client gets 503). A token request (:mod:`attestcall.service.attestation`) goes the
same way to the verdict, which :mod:`attestcall.ear` writes as the EAR claims-set the
service's signing key (:mod:`attestcall.service.tokens`) signs; it is audited, as kind
``token`` (refusals too), with the verdict's outcome and no serial. Verification, signing
and every database call run in worker threads, never on the event loop.

Slow clients are bounded: the request body by ``Settings.body_timeout`` (:func:`read_body`),
the request head by ``Settings.header_timeout`` (enforced by the server's protocol,
:mod:`attestcall.service.serving`, which explains what uvicorn does and does not bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Message, Receive, Scope, Send

from attestcall import ear, fetch
from attestcall.errors import (
    AttestcallError,
    CollateralError,
    CollateralUnavailable,
    EvidenceError,
    MeasurementDenied,
    PolicyError,
    StorageError,
    UsageError,
)
from attestcall.schema import Reason
from attestcall.service import attestation as attestations
from attestcall.service import collateral_routes
from attestcall.service import csr as csrs
from attestcall.service import result as results
from attestcall.service.ca import ServiceCa
from attestcall.service.collateral import (
    FAILURE_BACKOFF,
    REFRESH_CHECK,
    AmdSource,
    CollateralCache,
    IntelSource,
    Refresher,
)
from attestcall.service.group_commit import GroupCommit
from attestcall.service.problems import (
    PROBLEM,
    RETRY_AFTER,
    problem,
    storage_unavailable,
)
from attestcall.service.storage import Attempt, Storage, deny_reason, serial_hex
from attestcall.service.tokens import TokenSigner
from attestcall.service.workers import run_in_request_thread
from attestcall.tees import Tee, registry
from attestcall.verifier.api import verify
from attestcall.verifier.detect import detect
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict

LOG = logging.getLogger("attestcall.service")

MAX_BODY = csrs.MAX_CSR_SIZE  # 1 MiB
DEFAULT_LIFETIME = dt.timedelta(hours=24)
TOKEN_LIFETIME = dt.timedelta(minutes=10)  # an EAR token's exp - iat (serve --token-lifetime)
# A token's lifetime is bounded: under a minute, a relying party's clock skew eats it; over
# a week, a result outlives the TCB recoveries and revocations it was appraised against.
TOKEN_LIFETIMES = (dt.timedelta(minutes=1), dt.timedelta(days=7))
CRL_VALIDITY = dt.timedelta(minutes=15)  # the CRL's next update: revocations spread fast
PURGE_INTERVAL = 60.0  # seconds between purges of expired challenges
HEADER_TIMEOUT = 10.0  # seconds from connection (or previous answer) to a whole request head
BODY_TIMEOUT = 30.0  # seconds from the request head to the whole body
SIMULATED_COLLATERAL_TTL = 60.0  # seconds the simulators' collateral is reused (valid 30 days)
PEM_CHAIN = "application/pem-certificate-chain"
JWK_SET = "application/jwk-set+json"
NO_STORE = {"Cache-Control": "no-store"}
SETTINGS_ENV = "ATTESTCALL_SERVICE_SETTINGS"
ROUTES = ("/v1/challenge", "/v1/certificate", "/v1/attestation", "/v1/ca", "/v1/crl",
          "/.well-known/jwks.json", "/healthz", "/metrics", "/openapi.json")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Settings:
    """What one replica needs. ``policy_bytes`` is the policy file's content (None: the
    default policy); its SHA-256 goes into every certificate. ``public_url`` is this
    service's base URL as keeps and tenants reach it (the CRL distribution point).
    ``header_timeout`` and ``body_timeout`` (seconds) bound how long a client may take to
    send a request's head and its body (the server's protocol enforces the first, see
    :mod:`attestcall.service.serving`; the certificate endpoint the second).
    ``signer`` signs the EAR tokens (default: the key in the CA's home,
    :class:`TokenSigner`), valid ``token_lifetime``. Every ``collateral_refresh`` seconds
    the replica refreshes the collateral due (:class:`Refresher`). ``collateral_files``
    maps a technology name to the content of the file its verifier reads as collateral
    (``serve --collateral cca=FILE``: what ``verify``'s file option for that TEE reads),
    used for every piece of that TEE's evidence instead of the collateral cache."""

    storage: Storage
    ca: ServiceCa
    public_url: str
    policy_bytes: bytes | None = None
    lifetime: dt.timedelta = DEFAULT_LIFETIME
    pccs: str | None = None
    kds: str | None = None
    trust_simulated: bool = False
    offline: bool = False
    collateral_backoff: float = FAILURE_BACKOFF
    clock: Callable[[], dt.datetime] = _now
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    signer: TokenSigner | None = None
    token_lifetime: dt.timedelta = TOKEN_LIFETIME
    collateral_refresh: float = REFRESH_CHECK
    collateral_files: dict[str, bytes] = field(default_factory=dict)
    policy: Policy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = parse_policy(self.policy_bytes)
        if self.signer is None:
            if self.ca.home is None:
                raise UsageError("the service needs a token signing key (or a CA in a home)")
            self.signer = TokenSigner.load_or_create(self.ca.home)
        check_token_lifetime(self.token_lifetime)
        if self.lifetime <= dt.timedelta(0):
            raise UsageError("the certificate lifetime must be positive")
        if not self.collateral_refresh > 0:
            raise UsageError("the collateral refresh interval must be positive")
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise UsageError("the header and body timeouts must be positive")
        for option, url in (("--pccs", self.pccs), ("--kds", self.kds)):
            if url is not None:
                try:
                    fetch.check_url(url)
                except CollateralError:
                    raise UsageError(f"{option}: not an http(s) URL: {url!r}") from None
        self.public_url = self.public_url.rstrip("/")

    @property
    def crl_url(self) -> str:
        return f"{self.public_url}/v1/crl"


def check_token_lifetime(lifetime: dt.timedelta) -> None:
    """UsageError unless ``lifetime`` is within ``TOKEN_LIFETIMES``."""
    shortest, longest = TOKEN_LIFETIMES
    if not shortest <= lifetime <= longest:
        raise UsageError(f"the token lifetime must be from 1 minute to 7 days, not "
                         f"{_span(lifetime)}")


def _span(lifetime: dt.timedelta) -> str:
    """A duration as ``serve`` takes them: ``8d``, ``90m``, ``59s``."""
    seconds = lifetime.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def parse_policy(policy_bytes: bytes | None) -> Policy:
    """The policy in a TOML file's bytes (None or empty: the default policy)."""
    return Policy.from_bytes(policy_bytes)


# ---------------------------------------------------------------------- problems


class Refusal(Exception):
    """A request answered with a problem document: ``status``, a short ``title`` and the
    reasons (the first one is the ``detail``)."""

    def __init__(self, status: int, kind: str, title: str, reasons: list[str],
                 attempt: dict[str, Any] | None = None):
        super().__init__(reasons[0] if reasons else title)
        self.status, self.kind, self.title, self.reasons = status, kind, title, reasons
        self.attempt = attempt or {}

    @property
    def headers(self) -> dict[str, str] | None:
        if self.status == 503:
            return {"Retry-After": str(RETRY_AFTER)}
        if self.status == 408:  # the rest of a late body is not worth waiting for
            return {"Connection": "close"}
        return None


_unavailable = storage_unavailable


# ---------------------------------------------------------------------- metrics


class Metrics:
    """The service's Prometheus metrics, in their own registry (several applications may
    live in one process). Under ``PROMETHEUS_MULTIPROC_DIR`` (``serve --workers N``) the
    exposition gathers every worker's values."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("attestcall_service_requests", "HTTP requests answered",
                                ["path", "status"], registry=self.registry)
        self.verdicts = Counter("attestcall_service_verdicts",
                                "Certificate and token requests decided, by technology "
                                "and outcome",
                                ["technology", "outcome"], registry=self.registry)
        self.tokens = Counter("attestcall_service_tokens",
                              "EAR tokens issued, by technology and ear.status",
                              ["technology", "status"], registry=self.registry)
        self.latency = Histogram("attestcall_service_request_seconds",
                                 "Time to answer an HTTP request", ["path"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            gathered = CollectorRegistry()
            multiprocess.MultiProcessCollector(gathered)
            return generate_latest(gathered)
        return generate_latest(self.registry)


class ServiceApplication:
    """The ASGI application of one replica: Starlette's router behind one plain ASGI
    layer, which answers the router's HTTP errors (404, 405) and any exception escaping a
    route with a problem document (once the answer has started, only the log keeps the
    exception), so no request ever sees a traceback, and counts every answer by route and
    status and times it. Paths that are not routes count as ``other``, so garbage requests
    cannot grow the label set.

    One layer, not a Starlette application (with its error and exception middleware) under
    two middleware of the service's own: each layer wrapped every request's ``send`` again,
    a cost paid on every request (``bench/bench_service.py``)."""

    def __init__(self, routes: list[Route], metrics: Metrics, service: Service):
        self.router = Router(routes=routes, lifespan=self._lifespan)
        self.routes = self.router.routes
        self.metrics = metrics
        self.state = State()
        self.state.service = service
        self._counted: dict[tuple[str, int], Any] = {}  # the requests counter's children
        self._timed: dict[str, Any] = {}  # the latency histogram's children, by label

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        """While the server runs: the collateral refresher (not offline)."""
        service = self.state.service
        refresher = Refresher(service.cache, service.settings.collateral_refresh)
        refresher.start()
        try:
            yield
        finally:
            await run_in_threadpool(refresher.stop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        scope["app"] = self  # the router raises HTTPException (404, 405) only then
        path = scope["path"]
        label = path if path in ROUTES else (collateral_routes.label(path) or "other")
        start = time.perf_counter()
        status, started = 500, False

        async def sending(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.router(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if isinstance(exc, HTTPException) and not started:
                await _http_error(exc)(scope, receive, sending)
            else:
                LOG.exception("internal error answering %s", path)
                if not started:
                    await problem(500, "internal", "Internal Server Error",
                                  ["the service failed to answer; the error is in its log"])(
                        scope, receive, sending)
        finally:
            self._count(label, status, time.perf_counter() - start)

    def _count(self, label: str, status: int, seconds: float) -> None:
        counted = self._counted.get((label, status))
        if counted is None:
            counted = self._counted[label, status] = self.metrics.requests.labels(
                label, str(status))
        timed = self._timed.get(label)
        if timed is None:
            timed = self._timed[label] = self.metrics.latency.labels(label)
        counted.inc()
        timed.observe(seconds)


def _http_error(exc: HTTPException) -> Response:
    """The problem document of an HTTP error the router raised."""
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    return problem(exc.status_code, "http", title, [str(exc.detail)], headers=exc.headers)


# ---------------------------------------------------------------------- the service


class Service:
    """The endpoints of one replica over its settings."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.cache = CollateralCache(
            settings.storage, pccs=settings.pccs, kds=settings.kds, offline=settings.offline,
            trust_simulated=settings.trust_simulated, clock=settings.clock,
            registry=metrics.registry, failure_backoff=settings.collateral_backoff)
        self._last_purge = 0.0
        self._simulated: dict[str, tuple[float, Any]] = {}  # TEE -> (made at, source)
        self._simulated_lock = threading.Lock()
        self._token_records = GroupCommit(settings.storage.record_verdicts)

    # -- small endpoints ------------------------------------------------------------

    async def challenge(self, request: Request) -> Response:
        """A fresh single-use challenge."""
        storage = self.settings.storage
        try:
            value, expires_at = await run_in_request_thread(
                storage.new_challenge, self.settings.clock())
            if time.monotonic() - self._last_purge > PURGE_INTERVAL:
                self._last_purge = time.monotonic()
                await run_in_threadpool(storage.purge_challenges, self.settings.clock())
        except StorageError as exc:
            return _unavailable(exc)
        return JSONResponse(
            {"challenge": csrs.encode_challenge(value), "expires_at": _iso(expires_at)},
            headers={"Cache-Control": "no-store"})

    async def ca(self, request: Request) -> Response:
        return Response(self.settings.ca.pem(), media_type="application/x-pem-file")

    async def crl(self, request: Request) -> Response:
        try:
            der = await run_in_threadpool(self._crl_der)
        except StorageError as exc:
            return _unavailable(exc)
        return Response(der, media_type="application/pkix-crl")

    def _crl_der(self) -> bytes:
        now = self.settings.clock()
        crl = self.settings.ca.crl(self.settings.storage.revoked(now), now=now,
                                   next_update=now + CRL_VALIDITY)
        return crl.public_bytes(serialization.Encoding.DER)

    async def healthz(self, request: Request) -> Response:
        if await run_in_threadpool(self.settings.storage.healthy):
            return JSONResponse({"status": "ok"})
        return problem(503, "unavailable", "Service Unavailable",
                       ["the service database does not answer"], headers={"Retry-After": "5"})

    async def metrics_endpoint(self, request: Request) -> Response:
        data = await run_in_threadpool(self.metrics.exposition)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def jwks(self, request: Request) -> Response:
        assert self.settings.signer is not None
        return JSONResponse(self.settings.signer.jwks(), media_type=JWK_SET,
                            headers={"Cache-Control": "max-age=300"})

    # -- the certificate and the token ----------------------------------------------

    async def certificate(self, request: Request) -> Response:
        """A CSR in, a certificate chain or a problem document out."""
        return await self._decide(request, self._issue,
                                  lambda chain: Response(chain, media_type=PEM_CHAIN),
                                  kind="certificate")

    async def attestation(self, request: Request) -> Response:
        """Evidence in (JSON), an EAR token or a problem document out."""
        return await self._decide(request, self._attest,
                                  lambda token: JSONResponse({"token": token}, headers=NO_STORE),
                                  kind="token")

    async def _decide(self, request: Request, work: Callable[[bytes, str | None], Any],
                      answer: Callable[[Any], Response], *, kind: str) -> Response:
        """Read the body, run ``work(body, peer)`` in a request thread
        (:mod:`attestcall.service.workers`), and answer its result, or the problem document
        of its refusal (audited as a request of ``kind``: certificate or token)."""
        peer = request.client.host if request.client else None
        try:
            body = await read_body(request, self.settings.body_timeout)
        except Refusal as refusal:
            return await self._refused(refusal, peer, kind)
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            done = await run_in_request_thread(work, body, peer)
        except Refusal as refusal:
            return await self._refused(refusal, peer, kind)
        except StorageError as exc:
            return _unavailable(exc)
        return answer(done)

    async def _refused(self, refusal: Refusal, peer: str | None, kind: str) -> Response:
        """Audit a refused attempt (a request of ``kind``), count it and answer its problem
        document."""
        fields = refusal.attempt
        attempt = Attempt(time=self.settings.clock(), peer=peer,
                          technology=fields.get("technology"),
                          measurement=fields.get("measurement"),
                          tcb_status=fields.get("tcb_status"), reasons=refusal.reasons,
                          kind=kind)
        try:
            await run_in_threadpool(self.settings.storage.record_refusal, attempt)
        except StorageError as exc:
            return _unavailable(exc)
        self.metrics.verdicts.labels(fields.get("technology") or "unknown", "refused").inc()
        return problem(refusal.status, refusal.kind, refusal.title, refusal.reasons,
                       headers=refusal.headers)

    def _issue(self, body: bytes, peer: str | None) -> bytes:
        """The whole decision, in a worker thread. Raises Refusal or StorageError."""
        settings = self.settings
        storage = settings.storage
        try:
            contents = csrs.read_csr(body)
        except csrs.CsrTooLarge as exc:
            raise Refusal(413, "too-large", "Content Too Large", [str(exc)]) from None
        except csrs.PreAttestationRefused as exc:
            raise Refusal(403, "refused", "Forbidden", [str(exc)]) from None
        except csrs.CsrError as exc:
            raise Refusal(400, "bad-request", "Bad Request", [str(exc)]) from None
        tee = registry().by_id(contents.technology)
        if tee is None or not tee.verifiable:
            raise Refusal(400, "bad-request", "Bad Request",
                          [f"technology {contents.technology} evidence cannot be verified "
                           "by this service"])
        known: dict[str, Any] = {"technology": tee.name}
        if not storage.consume_challenge(contents.challenge, settings.clock()):
            raise Refusal(403, "challenge", "Forbidden",
                          ["the challenge is unknown, expired or already used (get a fresh "
                           "one from /v1/challenge)"], known)
        try:
            csrs.check_binding(contents)
        except csrs.CsrBindingError as exc:
            raise Refusal(403, "binding", "Forbidden", [str(exc)], known) from None
        except csrs.CsrError as exc:
            raise Refusal(400, "bad-request", "Bad Request", [str(exc)], known) from None

        verdict, now = self._verify(
            tee, contents.evidence, csrs.binding_nonce(contents.public_key, contents.challenge),
            known)
        if not verdict.accepted:
            raise Refusal(403, "refused", "Forbidden", list(verdict.reasons), known)
        result = results.from_verdict(verdict, settings.policy_bytes, policy=settings.policy,
                                      issued_at=now, nonce=contents.challenge)
        measurement = result.measurement.hex()
        # The deny-list is checked once, by the issuance's own transaction (a certificate
        # for a denied measurement is signed, then refused there, and never leaves here).
        certificate = settings.ca.issue(
            contents.public_key, contents.subject, lifetime=settings.lifetime,
            result=result, crl_url=settings.crl_url, now=now)
        attempt = Attempt(time=now, peer=peer, technology=tee.name, measurement=measurement,
                          tcb_status=verdict.tcb_status, reasons=())
        try:
            storage.record_issuance(attempt, serial=certificate.serial_number,
                                    not_after=certificate.not_valid_after_utc,
                                    der=certificate.public_bytes(serialization.Encoding.DER))
        except MeasurementDenied as exc:
            raise Refusal(403, "denied", "Forbidden", [str(exc)], known) from None
        self.metrics.verdicts.labels(tee.name, "accepted").inc()
        LOG.info("issued %s to %s (%s %s)", serial_hex(certificate.serial_number), peer,
                 tee.name, measurement)
        return certificate.public_bytes(serialization.Encoding.PEM) + settings.ca.pem()

    def _attest(self, body: bytes, peer: str | None) -> str:
        """A token request's whole decision, in a worker thread: the EAR token (JWT) of any
        usable evidence. Raises Refusal or StorageError."""
        settings = self.settings
        try:
            asked = attestations.read_request(body)
            tee = asked.tee or detect(asked.evidence)
        except (attestations.AttestationRequestError, EvidenceError) as exc:
            raise Refusal(400, "bad-request", "Bad Request", [str(exc)]) from None
        known: dict[str, Any] = {"technology": tee.name}
        if asked.challenge is not None \
                and not settings.storage.consume_challenge(asked.challenge, settings.clock()):
            raise Refusal(403, "challenge", "Forbidden",
                          ["the challenge is unknown, expired or already used (get a fresh "
                           "one from /v1/challenge)"], known)
        verdict, now = self._verify(tee, asked.evidence, asked.binding, known)
        measurement = known.get("measurement")
        # the audit record first, with the deny-list read in its transaction (a group
        # commit with other request threads' records): no token leaves unrecorded
        attempt = Attempt(time=now, peer=peer, technology=tee.name, measurement=measurement,
                          tcb_status=verdict.tcb_status,
                          reasons=[str(r) for r in verdict.reasons], kind="token")
        if self._token_records.submit((attempt, verdict.accepted)):
            verdict.reasons.append(Reason(deny_reason(measurement), "deny-list"))
            verdict.accepted = False
        claims = ear.claims_set(verdict, issued_at=now, expires_at=now + settings.token_lifetime,
                                nonce=asked.echoed, policy=settings.policy,
                                policy_bytes=settings.policy_bytes)
        assert settings.signer is not None
        token = settings.signer.sign(claims)
        outcome = "accepted" if verdict.accepted else "refused"
        status = claims[ear.SUBMODS][tee.name][ear.STATUS]
        self.metrics.verdicts.labels(tee.name, outcome).inc()
        self.metrics.tokens.labels(tee.name, status).inc()
        LOG.info("EAR token for %s: %s %s %s", peer, tee.name, measurement, status)
        return token

    def _verify(self, tee: Tee, evidence: bytes, nonce: bytes | None,
                known: dict[str, Any]) -> tuple[Verdict, dt.datetime]:
        """``verify`` with the service's policy and collateral, and the instant it verified
        at; what it learnt goes into ``known`` (for the audit). Raises Refusal when the
        evidence cannot be verified at all."""
        settings = self.settings
        try:
            # the collateral first: simulated collateral is issued "now", and must not be
            # issued after the instant it is verified at
            collateral = self._collateral(tee, evidence)
            now = settings.clock()
            verdict = verify(evidence, technology=tee.name, at=now, nonce=nonce,
                             policy=settings.policy, trust_simulated=settings.trust_simulated,
                             **collateral)
        except EvidenceError as exc:
            raise Refusal(400, "bad-request", "Bad Request",
                          [f"the {tee.label} evidence is unusable: {exc}"], known) from None
        except CollateralUnavailable as exc:  # the upstream is down: not the keep's fault
            LOG.warning("collateral unavailable: %s", exc)
            raise Refusal(503, "collateral-unavailable", "Service Unavailable",
                          [f"the {tee.label} collateral cannot be fetched just now ({exc}); "
                           "try again later with a fresh challenge"], known) from None
        except (CollateralError, PolicyError, UsageError) as exc:
            raise Refusal(403, "refused", "Forbidden",
                          [f"the {tee.label} evidence cannot be verified: {exc}"],
                          known) from None
        known["tcb_status"] = verdict.tcb_status
        try:
            known["measurement"] = results.measurement_of(verdict).hex()
        except results.ResultError:
            pass
        return verdict, now

    def _collateral(self, tee, evidence: bytes) -> dict[str, Any]:
        """verify()'s collateral arguments for ``tee``: the simulators' own collateral when
        simulated roots are trusted and no upstream is named for the TEE, else the fleet's
        collateral cache as the PCCS or KDS source the TEE takes."""
        given = self.settings.collateral_files.get(tee.name)
        if given is not None:
            return {"collateral": given}
        url_option = tee.collateral_options[1] if tee.collateral_options else None
        upstream = {"--pccs": self.settings.pccs, "--kds": self.settings.kds}.get(url_option or "")
        if self.settings.trust_simulated and tee.simulated_collateral is not None \
                and upstream is None:
            return {"collateral": self._simulated_collateral(tee, evidence)}
        if url_option == "--pccs":
            return {"collateral": IntelSource(self.cache)}
        if url_option == "--kds":
            return {"collateral": AmdSource(self.cache, evidence)}
        return {}

    def _simulated_collateral(self, tee, evidence: bytes) -> Any:
        """The simulators' collateral for ``tee``, made and loaded once a minute, not per
        request: making it signs four documents, and verifying against new bytes every
        time would miss every cache of the verifier. (Reused for a minute, it also follows
        a ``sim reset`` within a minute.)"""
        with self._simulated_lock:
            made = self._simulated.get(tee.name)
            if made is None or time.monotonic() - made[0] > SIMULATED_COLLATERAL_TTL:
                value = tee.simulated_collateral(evidence)
                if tee.collateral_source is not None:
                    value = tee.collateral_source(evidence, value, None)
                made = (time.monotonic(), value)
                self._simulated[tee.name] = made
            return made[1]


async def read_body(request: Request, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed MAX_BODY (from
    Content-Length before reading anything, else while reading), and with 408 when it is
    not all there ``timeout`` seconds after the request head."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, "bad-request", "Bad Request", ["invalid Content-Length"])
        if int(declared) > MAX_BODY:
            raise Refusal(413, "too-large", "Content Too Large",
                          [f"the request body is {declared} bytes; the limit is {MAX_BODY}"])
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise Refusal(413, "too-large", "Content Too Large",
                                  [f"the request body exceeds {MAX_BODY} bytes"])
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(408, "timeout", "Request Timeout",
                      [f"the request body did not arrive within {timeout:g} s ({size} bytes "
                       "came)"]) from None
    return b"".join(chunks)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- the application


class Endpoint:
    """A request handler (``Request -> Response``) as the plain ASGI application a Route
    runs as it is. Starlette wraps a function endpoint in its own layer, which looks up
    exception handlers and inspects the handler on every request; the service's one layer
    (:class:`ServiceApplication`) already answers what escapes a handler."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]):
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


def create_app(settings: Settings) -> ServiceApplication:
    """The ASGI application of one replica."""
    metrics = Metrics()
    service = Service(settings, metrics)
    routes = [
        Route("/v1/challenge", Endpoint(service.challenge), methods=["GET"]),
        Route("/v1/certificate", Endpoint(service.certificate), methods=["POST"]),
        Route("/v1/attestation", Endpoint(service.attestation), methods=["POST"]),
        Route("/.well-known/jwks.json", Endpoint(service.jwks), methods=["GET"]),
        Route("/v1/ca", Endpoint(service.ca), methods=["GET"]),
        Route("/v1/crl", Endpoint(service.crl), methods=["GET"]),
        Route("/healthz", Endpoint(service.healthz), methods=["GET"]),
        Route("/metrics", Endpoint(service.metrics_endpoint), methods=["GET"]),
        Route("/openapi.json", Endpoint(service.openapi), methods=["GET"]),
        *collateral_routes.CollateralRoutes(service.cache).routes(),
    ]
    return ServiceApplication(routes, metrics, service)


# ---------------------------------------------------------------------- settings from env


def settings_from_options(*, home: Path, database: str | None, public_url: str,
                          policy: str | None = None, lifetime_seconds: float | None = None,
                          token_lifetime_seconds: float | None = None,
                          pccs: str | None = None, kds: str | None = None,
                          trust_simulated: bool = False, offline: bool = False,
                          collateral_files: dict[str, str] | None = None) -> Settings:
    """Open the storage and the CA and read the policy file and the collateral files
    (technology name -> path), as ``serve`` gives them."""
    files = read_collateral_files(collateral_files or {})
    policy_bytes = None
    if policy is not None:
        try:
            policy_bytes = Path(policy).read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read policy {policy}: {exc.strerror}") from None
    ca = ServiceCa.load_or_create(home)
    storage = Storage.open(database, home)
    try:
        return Settings(
            storage=storage, ca=ca, public_url=public_url, policy_bytes=policy_bytes,
            lifetime=(dt.timedelta(seconds=lifetime_seconds) if lifetime_seconds
                      else DEFAULT_LIFETIME),
            token_lifetime=(dt.timedelta(seconds=token_lifetime_seconds)
                            if token_lifetime_seconds is not None else TOKEN_LIFETIME),
            pccs=pccs, kds=kds, trust_simulated=trust_simulated, offline=offline,
            collateral_files=files)
    except AttestcallError:
        storage.close()
        raise


def read_collateral_files(paths: dict[str, str]) -> dict[str, bytes]:
    """The content of each TEE's collateral file; :class:`UsageError` for a technology
    that is not registered or takes no collateral file, :class:`CollateralError` for a file
    that cannot be read."""
    files: dict[str, bytes] = {}
    for name, path in paths.items():
        tee = registry().by_name(name)
        if tee is None or not tee.collateral_options or tee.collateral_source is None:
            takers = [t.name for t in registry().tees if t.collateral_options]
            raise UsageError(f"--collateral {name}=...: no such technology takes a collateral "
                             f"file (one of {', '.join(takers)})")
        try:
            files[name] = Path(path).read_bytes()
        except OSError as exc:
            raise CollateralError(f"cannot read the {tee.label} collateral {path}: "
                                  f"{exc.strerror}") from None
    return files


def app_from_environment() -> ServiceApplication:
    """The application factory uvicorn's worker processes call (``serve --workers N``):
    the settings come as JSON in ``$ATTESTCALL_SERVICE_SETTINGS``."""
    options = json.loads(os.environ[SETTINGS_ENV])
    options["home"] = Path(options["home"])
    return create_app(settings_from_options(**options))


def openapi_document() -> dict[str, Any]:
    """The protocol as OpenAPI 3.1."""
    problem_response = {"content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    def answers(**codes: str) -> dict[str, Any]:
        return {code.lstrip("_"): {"description": text, **problem_response}
                for code, text in codes.items()}

    return {
        "openapi": "3.1.0",
        "info": {"title": "attestcall attestation service", "version": "1",
                 "description": "Keeps prove what they are once, with a CSR carrying evidence "
                 "bound to their key and a one-time challenge, and get a short-lived "
                 "certificate under the service CA carrying the attestation result."},
        "paths": {
            "/v1/challenge": {"get": {
                "summary": "A fresh challenge: 32 random bytes, single use, valid 120 s",
                "responses": {
                    "200": {"description": "the challenge", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Challenge"}}}},
                    **answers(_503="the database is unavailable")}}},
            "/v1/certificate": {"post": {
                "summary": "Exchange a CSR carrying bound evidence for a certificate",
                "description": "The CSR carries the challenge (base64url) in the PKCS#9 "
                "challengePassword attribute and the evidence in the CMW extension "
                "(1.3.6.1.5.5.7.1.35) or Enarx's; the evidence's report data must be "
                "SHA-512(DER SubjectPublicKeyInfo || challenge).",
                "requestBody": {"required": True, "content": {
                    "application/pkcs10": {"schema": {"type": "string", "format": "binary"}},
                    "application/x-pem-file": {"schema": {"type": "string"}}}},
                "responses": {
                    "200": {"description": "the issued certificate, then the CA's (PEM)",
                            "content": {PEM_CHAIN: {"schema": {"type": "string"}}}},
                    **answers(_400="the request is malformed",
                              _408="the body did not arrive in time (the connection is "
                              "closed)",
                              _403="refused: challenge, binding, verification, policy or "
                              "deny-list (the reasons are listed)",
                              _413="the body is larger than 1 MiB",
                              _503="the database, or the upstream collateral service, is "
                              "unavailable: try again after Retry-After seconds with a "
                              "fresh challenge")}}},
            "/v1/attestation": {"post": {
                "summary": "Appraise evidence and get an EAR attestation result token",
                "description": "The token is a JWT (ES384, verified with /.well-known/jwks.json) "
                "whose claims are an EAR claims-set (draft-ietf-rats-ear) of profile "
                f"{ear.PROFILE}: eat_profile, iat, exp, ear.verifier-id, eat_nonce (the "
                "challenge or nonce given), and one submod per technology with ear.status, "
                "ear.trustworthiness-vector, ear.appraisal-policy-id and "
                "ear.veraison.annotated-evidence. Usable evidence always gets a token; a "
                "refused verdict's is contraindicated. With a challenge (single use) the "
                "evidence's report data must be SHA-512(challenge); with a nonce, the nonce.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AttestationRequest"}}}},
                "responses": {
                    "200": {"description": "the EAR token", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Token"}}}},
                    **answers(_400="the request is malformed, the technology unknown, or the "
                              "evidence unusable or an SEV keep's private key",
                              _403="the challenge is unknown, expired or already used, or the "
                              "evidence cannot be verified (collateral refused)",
                              _408="the body did not arrive in time",
                              _413="the body is larger than 1 MiB",
                              _503="the database, or the upstream collateral service, is "
                              "unavailable")}}},
            "/.well-known/jwks.json": {"get": {
                "summary": "The keys that verify the EAR tokens (RFC 7517 JWK Set)",
                "responses": {"200": {"description": "ES384 P-384 keys with kid, alg, use",
                                      "content": {JWK_SET: {"schema": {"type": "object"}}}}}}},
            "/v1/ca": {"get": {"summary": "The CA certificate", "responses": {"200": {
                "description": "PEM", "content": {"application/x-pem-file": {
                    "schema": {"type": "string"}}}}}}},
            "/v1/crl": {"get": {"summary": "The certificate revocation list", "responses": {
                "200": {"description": "DER, signed by the CA", "content": {
                    "application/pkix-crl": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
                **answers(_503="the database is unavailable")}}},
            "/healthz": {"get": {"summary": "Whether the database answers", "responses": {
                "200": {"description": "healthy"},
                **answers(_503="the database does not answer")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1"}}}},
            **collateral_routes.openapi_paths(),
        },
        "components": {"schemas": {
            "Challenge": {"type": "object", "required": ["challenge", "expires_at"],
                          "properties": {
                              "challenge": {"type": "string",
                                            "description": "base64url, no padding"},
                              "expires_at": {"type": "string", "format": "date-time"}}},
            "AttestationRequest": {
                "type": "object", "required": ["evidence"], "additionalProperties": False,
                "properties": {
                    "evidence": {"type": "string", "description": "base64url: what "
                                 "get_attestation wrote"},
                    "technology": {"oneOf": [{"type": "string"}, {"type": "integer"}],
                                   "description": "name (sgx, snp, tdx) or technology id; "
                                   "detected from the evidence when absent"},
                    "challenge": {"type": "string", "description": "base64url, from "
                                  "/v1/challenge; report data = SHA-512(challenge)"},
                    "nonce": {"type": "string", "description": "base64url of 64 bytes; "
                              "report data = nonce (not with a challenge)"}}},
            "Token": {"type": "object", "required": ["token"],
                      "properties": {"token": {"type": "string",
                                               "description": "JWT (JWS compact, ES384)"}}},
            "Problem": {"type": "object", "description": "RFC 9457 problem details",
                        "properties": {"type": {"type": "string"},
                                       "title": {"type": "string"},
                                       "status": {"type": "integer"},
                                       "detail": {"type": "string"},
                                       "reasons": {"type": "array",
                                                   "items": {"type": "string"}}}},
        }},
    }
