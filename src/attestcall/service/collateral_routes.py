"""The collateral cache over HTTP, on Intel's PCCS v4 paths and AMD KDS's, so that existing
clients (``attestcall verify --pccs/--kds``, dcap-qvl, Intel's QPL, go-sev-guest, ...) can
use the service as their PCCS or KDS.

Intel (PCS v4 answers: bodies as Intel serves them, issuer chains as URL-encoded PEM in
Intel's headers)::

    GET /sgx/certification/v4/pckcrl?ca=processor|platform[&encoding=der|pem]
        the PCK CRL, PEM (DER with encoding=der); SGX-PCK-CRL-Issuer-Chain
    GET /sgx/certification/v4/rootcacrl[?encoding=der|pem]
        the root CA CRL, hex (as a PCCS serves it; DER or PEM when asked)
    GET /{sgx,tdx}/certification/v4/tcb?fmspc=FMSPC[&update=standard|early]
        {"tcbInfo": ..., "signature": ...}; TCB-Info-Issuer-Chain
    GET /{sgx,tdx}/certification/v4/qe/identity[?update=standard|early]
        {"enclaveIdentity": ..., "signature": ...}; SGX-Enclave-Identity-Issuer-Chain
    GET /sgx/certification/v4/pckcert?encrypted_ppid=..&cpusvn=..&pcesvn=..&pceid=..[&qeid=..]
        the PCK certificate (PEM), passed through and cached by query;
        SGX-PCK-Certificate-Issuer-Chain, SGX-TCBm, SGX-FMSPC, SGX-PCK-Certificate-CA-Type

AMD (KDS)::

    GET /vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..[&fmcSPL=..]
        the VCEK (DER)
    GET /{vcek,vlek}/v1/{product}/cert_chain    the ASK (or ASVK) and the ARK (PEM)
    GET /{vcek,vlek}/v1/{product}/crl           the ARK's CRL (DER)

A malformed request is a 400 problem document, an item the upstream does not have (or an
offline cache does not hold) a 404, an upstream outage with nothing kept a 503 with
Retry-After, and so is a database that does not answer.
"""

from __future__ import annotations

import binascii
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from attestcall.amd.fetch import items as amd_items
from attestcall.errors import (
    CollateralError,
    CollateralMissing,
    CollateralUnavailable,
    StorageError,
)
from attestcall.intel.fetch import items as intel_items
from attestcall.service.collateral import CollateralCache
from attestcall.service.collateral_store import Item, Record
from attestcall.service.problems import RETRY_AFTER, problem, storage_unavailable

INTEL_API = "certification/v4"
PEM_FILE = "application/x-pem-file"
CRL_DER = "application/pkix-crl"
INTEL_PATHS = (
    f"/sgx/{INTEL_API}/pckcrl", f"/sgx/{INTEL_API}/rootcacrl", f"/sgx/{INTEL_API}/tcb",
    f"/sgx/{INTEL_API}/qe/identity", f"/sgx/{INTEL_API}/pckcert", f"/tdx/{INTEL_API}/tcb",
    f"/tdx/{INTEL_API}/qe/identity",
)

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """The request names no item: a 400 with this reason."""


def label(path: str) -> str | None:
    """The metrics label of a collateral path (templated, so chip ids cannot grow the label
    set), or None if it is not one."""
    if path in INTEL_PATHS:
        return path
    parts = path.split("/")
    if len(parts) == 5 and parts[1] in amd_items.FAMILIES and parts[2] == "v1":
        tail = parts[4] if parts[4] in ("cert_chain", "crl") else "{hwid}"
        return f"/{parts[1]}/v1/{{product}}/{tail}"
    return None


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters: each at most once, each one of ``allowed``."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise BadRequest(f"unknown query parameter {name!r} (known: {known})")
        if name in found:
            raise BadRequest(f"query parameter {name!r} is given twice")
        found[name] = value
    return found


def _choice(params: dict[str, str], name: str, choices: tuple[str, ...],
            default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None:
        raise BadRequest(f"query parameter {name!r} is required ({' or '.join(choices)})")
    if value not in choices:
        raise BadRequest(f"{name} is {' or '.join(choices)}, not {value!r}")
    return value


def _crl_body(der: bytes, encoding: str) -> tuple[bytes, str]:
    if encoding == "der":
        return der, CRL_DER
    if encoding == "hex":
        return binascii.hexlify(der), "text/plain"
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM), PEM_FILE


class CollateralRoutes:
    """The PCCS and KDS endpoints over one cache."""

    def __init__(self, cache: CollateralCache) -> None:
        self.cache = cache

    def routes(self) -> list[Route]:
        """The routes, to mount beside the service's own."""
        routes = [
            Route(f"/sgx/{INTEL_API}/pckcrl", self._serve(self._pckcrl), methods=["GET"]),
            Route(f"/sgx/{INTEL_API}/rootcacrl", self._serve(self._rootcacrl), methods=["GET"]),
            Route(f"/sgx/{INTEL_API}/pckcert", self._serve(self._pckcert), methods=["GET"]),
        ]
        for tee in intel_items.TEES:
            routes += [
                Route(f"/{tee}/{INTEL_API}/tcb", self._serve(self._tcb(tee)), methods=["GET"]),
                Route(f"/{tee}/{INTEL_API}/qe/identity", self._serve(self._qe(tee)),
                      methods=["GET"]),
            ]
        for family in amd_items.FAMILIES:  # cert_chain and crl before the chip's path
            for kind in ("cert_chain", "crl"):
                routes.append(Route(f"/{family}/v1/{{product}}/{kind}",
                                    self._serve(self._amd(family, kind)), methods=["GET"]))
        routes.append(Route("/vcek/v1/{product}/{hwid}", self._serve(self._vcek),
                            methods=["GET"]))
        return routes

    # -- one wrapper for every endpoint --------------------------------------------------

    def _serve(self, answer: Callable[[Request], tuple[Item, Callable[[Record], Response]]]
               ) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                item, respond = answer(request)
            except (BadRequest, CollateralError) as exc:
                return problem(400, "bad-request", "Bad Request", [str(exc)])
            try:
                record = await run_in_threadpool(self.cache.get, item)
            except CollateralMissing as exc:
                return problem(404, "collateral-missing", "Not Found", [str(exc)])
            except CollateralUnavailable as exc:
                wait = getattr(exc, "retry_after", None) or RETRY_AFTER
                return problem(503, "collateral-unavailable", "Service Unavailable",
                               [f"the collateral cannot be had just now: {exc}"],
                               headers={"Retry-After": str(max(1, round(wait)))})
            except CollateralError as exc:
                return problem(503, "collateral-unavailable", "Service Unavailable", [str(exc)],
                               headers={"Retry-After": str(RETRY_AFTER)})
            except StorageError as exc:
                return storage_unavailable(exc)
            return respond(record)

        return endpoint

    @staticmethod
    def _answer(media_type: str, headers: tuple[str, ...] = ()
                ) -> Callable[[Record], Response]:
        def respond(record: Record) -> Response:
            kept = {name: record.headers[name] for name in headers if name in record.headers}
            return Response(record.body, media_type=media_type, headers=kept)

        return respond

    # -- Intel ------------------------------------------------------------------------------

    def _pckcrl(self, request: Request) -> tuple[Item, Callable[[Record], Response]]:
        params = _params(request, ("ca", "encoding"))
        ca = _choice(params, "ca", intel_items.CAS)
        encoding = _choice(params, "encoding", ("der", "pem"), "pem")

        def respond(record: Record) -> Response:
            body, media_type = _crl_body(record.body, encoding)
            chain = record.headers.get(intel_items.PCK_CRL_CHAIN)
            headers = {intel_items.PCK_CRL_CHAIN: chain} if chain else {}
            return Response(body, media_type=media_type, headers=headers)

        return Item("intel", "pckcrl", ca), respond

    def _rootcacrl(self, request: Request) -> tuple[Item, Callable[[Record], Response]]:
        params = _params(request, ("encoding",))
        encoding = _choice(params, "encoding", ("der", "pem", "hex"), "hex")

        def respond(record: Record) -> Response:
            body, media_type = _crl_body(record.body, encoding)
            return Response(body, media_type=media_type)

        return Item("intel", "rootcacrl", ""), respond

    def _tcb(self, tee: str) -> Callable[[Request], tuple[Item, Callable[[Record], Response]]]:
        def answer(request: Request) -> tuple[Item, Callable[[Record], Response]]:
            params = _params(request, ("fmspc", "update"))
            if "fmspc" not in params:
                raise BadRequest("query parameter 'fmspc' is required (12 hex digits)")
            update = _choice(params, "update", intel_items.UPDATES, "standard")
            key = intel_items.tcb_key(tee, params["fmspc"], update)
            return (Item("intel", "tcb", key),
                    self._answer("application/json", (intel_items.TCB_INFO_CHAIN,)))

        return answer

    def _qe(self, tee: str) -> Callable[[Request], tuple[Item, Callable[[Record], Response]]]:
        def answer(request: Request) -> tuple[Item, Callable[[Record], Response]]:
            params = _params(request, ("update",))
            update = _choice(params, "update", intel_items.UPDATES, "standard")
            return (Item("intel", "qeidentity", intel_items.qe_key(tee, update)),
                    self._answer("application/json", (intel_items.QE_IDENTITY_CHAIN,)))

        return answer

    def _pckcert(self, request: Request) -> tuple[Item, Callable[[Record], Response]]:
        params = _params(request, tuple(intel_items.PCK_CERT_PARAMS))
        key = intel_items.pckcert_key(params)
        headers = (intel_items.PCK_CERT_CHAIN, *intel_items.PCK_CERT_HEADERS)
        return Item("intel", "pckcert", key), self._answer(PEM_FILE, headers)

    # -- AMD --------------------------------------------------------------------------------

    def _amd(self, family: str, kind: str
             ) -> Callable[[Request], tuple[Item, Callable[[Record], Response]]]:
        media_type = PEM_FILE if kind == "cert_chain" else CRL_DER

        def answer(request: Request) -> tuple[Item, Callable[[Record], Response]]:
            _params(request, ())
            key = amd_items.family_key(family, request.path_params["product"])
            return Item("amd", kind, key), self._answer(media_type)

        return answer

    def _vcek(self, request: Request) -> tuple[Item, Callable[[Record], Response]]:
        params = _params(request, amd_items.SPLS)
        key = amd_items.vcek_key(request.path_params["product"], request.path_params["hwid"],
                                 params)
        return Item("amd", "vcek", key), self._answer("application/pkix-cert")


def openapi_paths() -> dict[str, object]:
    """The PCCS and KDS paths for the service's OpenAPI document."""
    problem_ref = {"content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}
    errors = {"400": {"description": "a malformed request", **problem_ref},
              "404": {"description": "no such item upstream, or not cached (offline)",
                      **problem_ref},
              "503": {"description": "the upstream or the database is unavailable and "
                      "nothing is cached (Retry-After)", **problem_ref}}

    def get(summary: str, media_type: str, parameters: list[str],
            path_parameters: tuple[str, ...] = ()) -> dict[str, object]:
        params = [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                  for name in parameters]
        params += [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                   for name in path_parameters]
        return {"get": {"summary": summary, "parameters": params, "responses": {
            "200": {"description": "as Intel's PCS / AMD's KDS answers",
                    "content": {media_type: {"schema": {"type": "string"}}}}, **errors}}}

    paths: dict[str, object] = {
        f"/sgx/{INTEL_API}/pckcrl": get("PCK CRL (PCCS v4)", CRL_DER, ["ca", "encoding"]),
        f"/sgx/{INTEL_API}/rootcacrl": get("Intel SGX root CA CRL (hex)", "text/plain",
                                           ["encoding"]),
        f"/sgx/{INTEL_API}/pckcert": get("PCK certificate, cached by query", PEM_FILE,
                                         list(intel_items.PCK_CERT_PARAMS)),
        "/vcek/v1/{product}/{hwid}": get("VCEK (KDS)", "application/pkix-cert",
                                         list(amd_items.SPLS), ("product", "hwid")),
    }
    for tee in intel_items.TEES:
        paths[f"/{tee}/{INTEL_API}/tcb"] = get(f"{tee.upper()} TCB info", "application/json",
                                               ["fmspc", "update"])
        paths[f"/{tee}/{INTEL_API}/qe/identity"] = get(f"{tee.upper()} QE identity",
                                                       "application/json", ["update"])
    for family in amd_items.FAMILIES:
        paths[f"/{family}/v1/{{product}}/cert_chain"] = get(
            f"ASK{'' if family == 'vcek' else ' (ASVK)'} and ARK", PEM_FILE, [], ("product",))
        paths[f"/{family}/v1/{{product}}/crl"] = get("the ARK's CRL", CRL_DER, [], ("product",))
    return paths
