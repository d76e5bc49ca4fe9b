"""Bounded HTTP GETs for collateral services (Intel PCS/PCCS, AMD KDS), standard library only.

Every request has a per-operation socket timeout and an overall deadline, the body is capped
(by Content-Length up front, then while reading), redirects are refused, only http and
https URLs are allowed, and every failure raises :class:`CollateralError` with one line that
names the URL: :class:`CollateralUnavailable` (transient) when the service cannot be reached,
times out, or answers 5xx or 429. Proxies from the environment are honoured, except for
loopback hosts.

HTTPS always verifies the server's certificate and host name (TLS 1.2 or later): against
the system's trust store by default, or against one CA file (:func:`https_context`).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from attestcall.errors import CollateralError, CollateralUnavailable, UsageError

if TYPE_CHECKING:
    from OpenSSL import SSL

    from attestcall.tls import TlsError

DEFAULT_TIMEOUT = 20.0  # seconds, per socket operation and for the whole body
DEFAULT_MAX_SIZE = 4 * 1024 * 1024  # bytes; the largest real TCB info is ~100 KiB
_CHUNK = 64 * 1024


MAX_RETRY_AFTER = 3600.0  # seconds: a longer Retry-After is taken as this


class HttpStatusError(CollateralError):
    """The service answered with a non-2xx status (kept in ``status``)."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class HttpUnavailable(HttpStatusError, CollateralUnavailable):
    """The service answered 5xx or 429: it is down or busy, not refusing."""


def status_error(message: str, status: int, retry_after: float | None = None) -> HttpStatusError:
    """The error for a non-2xx answer: ``HttpUnavailable`` for 5xx and 429."""
    kind = HttpUnavailable if status >= 500 or status == 429 else HttpStatusError
    return kind(message, status, retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header's delay in seconds (delta-seconds or an HTTP date, RFC 9110
    section 10.2.3), at most ``MAX_RETRY_AFTER``; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Response:
    """A successful (2xx) answer: its URL, status, headers and body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value (names compare case-insensitively), or None."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True)
class Checked:
    """An upstream's answer that passed a collateral cache's check of it: what to keep (the
    body, normalised; the response headers that matter, as given) and the answer's own
    next update."""

    body: bytes
    headers: dict[str, str]
    next_update: datetime


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused",
                                     headers, fp)  # fmt: skip


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_context(cafile: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A TLS client context (TLS 1.2 or later) that verifies the server's certificate and
    host name: against the system's trust store, or with ``cafile`` (PEM) against the CAs in
    that file only. UsageError, one line, when the file cannot be read or holds no CA."""
    try:
        context = ssl.create_default_context(
            cafile=None if cafile is None else os.fspath(cafile))
    except ssl.SSLError as exc:
        raise UsageError(f"{os.fspath(cafile or '')} holds no PEM CA certificate "
                         f"({exc.reason or exc})") from None
    except OSError as exc:
        raise UsageError(f"cannot read the CA file {os.fspath(cafile or '')}: "
                         f"{exc.strerror or exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_failure(exc: ssl.SSLError | TlsError) -> str:
    """One line for a failed TLS handshake: an untrusted certificate says why."""
    from attestcall.tls import CertificateUntrusted, TlsError

    if isinstance(exc, CertificateUntrusted):
        return f"the server's HTTPS certificate is not trusted ({exc.reason})"
    if isinstance(exc, TlsError):
        return f"the TLS handshake failed ({exc.reason})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the server's HTTPS certificate is not trusted "
                f"({exc.verify_message or exc.reason})")
    return f"the TLS handshake failed ({exc.reason or exc})"


class _TlsHandler(urllib.request.HTTPSHandler):
    """https URLs over :class:`attestcall.tls.HttpsConnection` (pyOpenSSL, TLS 1.3)."""

    def __init__(self, context: SSL.Context):
        super().__init__()
        self.tls_context = context

    def https_open(self, req: urllib.request.Request):  # type: ignore[override]
        from attestcall.tls import HttpsConnection

        return self.do_open(HttpsConnection, req, context=self.tls_context)


def _opener(url: str, tls: Any = None) -> urllib.request.OpenerDirector:
    """``tls``: an ``ssl.SSLContext`` or a pyOpenSSL ``SSL.Context`` for https URLs."""
    host = urllib.parse.urlsplit(url).hostname
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        handlers.append(_TlsHandler(tls))
    elif tls is not None:
        handlers.append(urllib.request.HTTPSHandler(context=tls))
    return urllib.request.build_opener(*handlers)


def _is_tls_failure(reason: object) -> bool:
    if isinstance(reason, ssl.SSLError):
        return True
    # attestcall.tls is imported only where it is used (it loads cryptography): an error of
    # its own can only come when it is
    if type(reason).__module__ != "attestcall.tls":
        return False
    from attestcall.tls import TlsError

    return isinstance(reason, TlsError)


def check_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CollateralError(f"not an http(s) URL: {url!r}")


def get(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_size: int = DEFAULT_MAX_SIZE,
    accept: str = "*/*",
    tls: Any = None,
) -> Response:
    """GET ``url``; the 2xx response, or CollateralError with one line saying why not.
    ``tls``: the context for an https URL, Python's ``ssl.SSLContext`` or attestcall's
    (:func:`attestcall.tls.verifying_client_context`) (default: :func:`https_context`,
    system trust)."""
    check_url(url)
    request = urllib.request.Request(
        url, headers={"Accept": accept, "User-Agent": "attestcall"}, method="GET"
    )
    deadline = time.monotonic() + timeout
    try:
        with _opener(url, tls).open(request, timeout=timeout) as answer:
            status = answer.status
            headers = _headers(answer.headers)
            body = read_body(answer, url, max_size, deadline, timeout)
    except CollateralError:
        raise
    except urllib.error.HTTPError as exc:
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        message = f"{url}: HTTP {exc.code} {exc.reason}".rstrip()
        raise status_error(message, exc.code, retry_after) from None
    except TimeoutError:
        raise CollateralUnavailable(f"{url}: timed out after {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise CollateralUnavailable(f"{url}: timed out after {timeout:g} s") from None
        if _is_tls_failure(reason):  # not transient: the same answer next time
            raise CollateralError(f"{url}: {tls_failure(reason)}") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise CollateralUnavailable(f"{url}: cannot connect: {text}") from None
    except http.client.HTTPException as exc:
        name = type(exc).__name__
        raise CollateralError(f"{url}: not a valid HTTP answer ({name})") from None
    except (OSError, ValueError) as exc:
        raise CollateralError(f"{url}: request failed: {exc}") from None
    return Response(url, status, headers, body)


RETRY_BUDGET = 30.0  # seconds: the most a user's fetch waits between attempts, in all
RETRY_ATTEMPTS = 4
_FIRST_BACKOFF = 0.5  # seconds, doubled after each attempt


def get_retrying(
    url: str,
    *,
    budget: float = RETRY_BUDGET,
    attempts: int = RETRY_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> Response:
    """:func:`get`, tried again when the service is busy or down (5xx, 429): after its
    ``Retry-After`` when it says one, else after 0.5 s, 1 s, 2 s, ...; at most ``attempts``
    tries and ``budget`` seconds of waiting in all (a Retry-After beyond what is left of
    the budget ends the tries at once). The last failure is raised, saying how often it
    was tried. Other failures (404, a refused connection, a bad answer) are not retried."""
    waited = 0.0
    backoff = _FIRST_BACKOFF
    for attempt in range(1, attempts + 1):
        try:
            return get(url, **options)
        except HttpUnavailable as exc:
            delay = exc.retry_after if exc.retry_after is not None else backoff
            backoff *= 2
            if attempt == attempts or waited + delay > budget:
                if attempt == 1:
                    raise
                raise status_error(f"{exc} (tried {attempt} times)", exc.status,
                                   exc.retry_after) from None
            sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # pragma: no cover


def _headers(message: Message) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in message.items():
        headers.setdefault(key, value)  # the first occurrence wins
    return headers


def headers_length(headers: Mapping[str, str]) -> int | None:
    for key, value in headers.items():
        if key.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def read_body(
    answer: http.client.HTTPResponse,
    url: str,
    max_size: int,
    deadline: float,
    timeout: float,
    *,
    error: type[Exception] = CollateralError,
) -> bytes:
    """The body of ``answer``, at most ``max_size`` bytes (a larger Content-Length is refused
    before reading) and read before ``deadline``; ``error`` (one line naming ``url``)
    otherwise. Shared by every bounded HTTP client of attestcall."""
    declared = headers_length(_headers(answer.headers))
    if declared is not None and declared > max_size:
        raise error(f"{url}: response of {declared} bytes exceeds the {max_size}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise error(f"{url}: timed out after {timeout:g} s")
        chunk = answer.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_size:
            raise error(f"{url}: response exceeds the {max_size}-byte limit")
        chunks.append(chunk)
