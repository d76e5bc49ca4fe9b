"""A small HTTP server on 127.0.0.1 that plays Intel's PCS or AMD's KDS for tests.

Routes map the request target (path and query, as sent) to a canned :class:`Route`; every
request target is recorded in ``requests``. Unknown targets get 404. A route can be slow
(bounded: the handler sleeps at most ``MAX_DELAY`` seconds and then gives up), omit its
Content-Length (body delimited by closing the connection), send raw bytes that are not
HTTP at all, or answer once and then as another route (``then``: a busy service that
recovers).
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType

MAX_DELAY = 3.0


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    no_length: bool = False
    raw: bytes | None = None
    then: Route | None = None  # served from the next request on (this one answers once)


class CollateralServer:
    """``with CollateralServer() as server: server.routes[target] = Route(...)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.requests.append(self.path)
                route = server.routes.get(self.path) or Route(b"not found\n", status=404)
                if route.then is not None:
                    server.routes[self.path] = route.then
                if route.delay:
                    time.sleep(min(route.delay, MAX_DELAY))
                if route.raw is not None:
                    self.wfile.write(route.raw)
                    self.close_connection = True
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (size limit, timeout): expected in tests

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CollateralServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# ------------------------------------------------------------- Intel PCS answers

API = "/sgx/certification/v4"


def chain_header(pem: str) -> str:
    return urllib.parse.quote(pem, safe="")


def signed_body(member: str, text: str, signature: str) -> bytes:
    return ('{"' + member + '":' + text + ',"signature":"' + signature + '"}').encode()


def serve_intel(
    server: CollateralServer,
    collateral: dict[str, str],
    *,
    tee: str,
    fmspc: str,
    ca: str,
) -> dict[str, str]:
    """Serve ``collateral`` as Intel's PCS / a PCCS does; return the routes' targets."""
    targets = {
        "pck_crl": f"{API}/pckcrl?ca={ca}&encoding=der",
        "root_ca_crl": f"{API}/rootcacrl",
        "tcb_info": f"/{tee}/certification/v4/tcb?fmspc={fmspc}",
        "qe_identity": f"/{tee}/certification/v4/qe/identity",
    }
    json_type = {"Content-Type": "application/json"}
    server.routes[targets["pck_crl"]] = Route(
        bytes.fromhex(collateral["pck_crl"]),
        headers={"SGX-PCK-CRL-Issuer-Chain": chain_header(collateral["pck_crl_issuer_chain"])},
    )
    # A PCCS answers the root CA CRL hex-encoded.
    server.routes[targets["root_ca_crl"]] = Route(collateral["root_ca_crl"].encode())
    server.routes[targets["tcb_info"]] = Route(
        signed_body("tcbInfo", collateral["tcb_info"], collateral["tcb_info_signature"]),
        headers={
            "TCB-Info-Issuer-Chain": chain_header(collateral["tcb_info_issuer_chain"]),
            **json_type,
        },
    )
    server.routes[targets["qe_identity"]] = Route(
        signed_body(
            "enclaveIdentity", collateral["qe_identity"], collateral["qe_identity_signature"]
        ),
        headers={
            "SGX-Enclave-Identity-Issuer-Chain": chain_header(
                collateral["qe_identity_issuer_chain"]
            ),
            **json_type,
        },
    )
    return targets
