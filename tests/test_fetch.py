"""attestcall.fetch: the bounded GET, against a real server on 127.0.0.1 (every wait is
bounded: server delays by collateral_server.MAX_DELAY, client waits by its timeout)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from attestcall import fetch
from attestcall.errors import CollateralError, CollateralUnavailable
from tests.fakes.collateral_server import CollateralServer, Route


@pytest.fixture
def server() -> Iterator[CollateralServer]:
    with CollateralServer() as running:
        yield running


def test_a_2xx_answer_gives_status_headers_and_body(server: CollateralServer) -> None:
    server.routes["/ok"] = Route(b"hello", status=203, headers={"X-Thing": "yes"})
    answer = fetch.get(server.url + "/ok", accept="application/json")
    assert (answer.status, answer.body, answer.url) == (203, b"hello", server.url + "/ok")
    assert answer.header("x-thing") == "yes" and answer.header("X-THING") == "yes"
    assert answer.header("absent") is None
    assert server.requests == ["/ok"]


def test_a_body_without_content_length_is_read_to_the_end(server: CollateralServer) -> None:
    server.routes["/close"] = Route(b"x" * 200_000, no_length=True)
    assert fetch.get(server.url + "/close").body == b"x" * 200_000


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_refused(server: CollateralServer, status: int) -> None:
    server.routes["/moved"] = Route(status=status, headers={"Location": server.url + "/ok"})
    server.routes["/ok"] = Route(b"should not be fetched")
    with pytest.raises(CollateralError) as caught:
        fetch.get(server.url + "/moved")
    assert "/ok" not in server.requests
    assert server.url + "/moved" in str(caught.value)


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_non_2xx_is_an_http_status_error(server: CollateralServer, status: int) -> None:
    server.routes["/bad"] = Route(b"no", status=status)
    with pytest.raises(fetch.HttpStatusError) as caught:
        fetch.get(server.url + "/bad")
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value) and "/bad" in str(caught.value)
    assert isinstance(caught.value, CollateralError)
    # a server error or a rate limit is transient; a client error is an answer
    assert isinstance(caught.value, CollateralUnavailable) == (status in (429, 500, 503))


def test_a_declared_length_over_the_cap_is_refused_before_reading(
    server: CollateralServer,
) -> None:
    server.routes["/big"] = Route(b"y" * 2048)
    with pytest.raises(CollateralError, match="2048 bytes exceeds the 1024-byte limit"):
        fetch.get(server.url + "/big", max_size=1024)
    assert fetch.get(server.url + "/big", max_size=2048).body == b"y" * 2048


def test_an_undeclared_body_over_the_cap_is_cut_off(server: CollateralServer) -> None:
    server.routes["/stream"] = Route(b"z" * 300_000, no_length=True)
    with pytest.raises(CollateralError, match="exceeds the 100000-byte limit"):
        fetch.get(server.url + "/stream", max_size=100_000)


def test_a_slow_server_times_out(server: CollateralServer) -> None:
    server.routes["/slow"] = Route(b"late", delay=2.0)
    with pytest.raises(CollateralUnavailable, match="timed out"):
        fetch.get(server.url + "/slow", timeout=0.2)


def test_an_answer_that_is_not_http_is_refused(server: CollateralServer) -> None:
    server.routes["/raw"] = Route(raw=b"\x00\x01 this is not HTTP\r\n\r\n")
    with pytest.raises(CollateralError, match="/raw"):
        fetch.get(server.url + "/raw")


def test_nobody_listening_is_a_collateral_error() -> None:
    with CollateralServer() as gone:
        url = gone.url + "/x"
    with pytest.raises(CollateralUnavailable, match="cannot connect|timed out"):
        fetch.get(url, timeout=2.0)


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x", "file:///etc/passwd", "http:///no-host", "127.0.0.1/x", "", "gopher://h"],
)
def test_only_http_and_https_urls_are_fetched(url: str) -> None:
    with pytest.raises(CollateralError, match="not an http"):
        fetch.get(url)
    with pytest.raises(CollateralError, match="not an http"):
        fetch.check_url(url)


def test_headers_length() -> None:
    assert fetch.headers_length({"Content-Length": "12"}) == 12
    assert fetch.headers_length({"content-length": "12"}) == 12
    assert fetch.headers_length({"Content-Length": "twelve"}) is None
    assert fetch.headers_length({}) is None
