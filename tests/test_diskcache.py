"""attestcall.diskcache.Cache: location, expiry, atomic writes, corrupt entries."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from attestcall.diskcache import Cache, default_directory
from tests.clock import Clock

NOW = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
URL = "https://pccs.example/sgx/certification/v4/tcb?fmspc=00A067110000"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Cache:
    return Cache(tmp_path / "a" / "cache", clock=clock)


def test_directory_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTESTCALL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "explicit"
    assert Cache().directory == tmp_path / "explicit"
    monkeypatch.delenv("ATTESTCALL_CACHE")
    assert default_directory() == tmp_path / "xdg" / "attestcall"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_directory() == tmp_path / "home" / ".cache" / "attestcall"


def test_round_trip_and_private_directory(cache: Cache) -> None:
    assert cache.get(URL) is None
    assert not cache.directory.exists()  # nothing is created by reading
    cache.put(URL, b"\x00collateral\xff", LATER)
    assert cache.get(URL) == b"\x00collateral\xff"
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    assert [p.name for p in cache.directory.iterdir()] == [cache.path(URL).name]  # no temp left


def test_keys_are_distinct(cache: Cache) -> None:
    cache.put(URL, b"one", LATER)
    cache.put(URL + "x", b"two", LATER)
    assert (cache.get(URL), cache.get(URL + "x")) == (b"one", b"two")
    cache.put(URL, b"three", LATER)  # replaced atomically
    assert cache.get(URL) == b"three"


def test_expiry(cache: Cache, clock: Clock) -> None:
    cache.put(URL, b"data", LATER)
    clock.now = LATER - dt.timedelta(microseconds=1)
    assert cache.get(URL) == b"data"
    clock.now = LATER
    assert cache.get(URL) is None


def test_already_expired_data_is_not_stored(cache: Cache) -> None:
    cache.put(URL, b"data", NOW)
    assert not cache.path(URL).exists()


def test_naive_expiry_is_refused(cache: Cache) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.put(URL, b"data", dt.datetime(2030, 1, 1))


@pytest.mark.parametrize(
    "damage",
    [
        lambda entry: b"",
        lambda entry: b"\x00\x01garbage",
        lambda entry: json.dumps([1, 2]).encode(),
        lambda entry: json.dumps({**entry, "format": 99}).encode(),
        lambda entry: json.dumps({**entry, "key": "https://other/"}).encode(),
        lambda entry: json.dumps({**entry, "data": "!!not base64!!"}).encode(),
        lambda entry: json.dumps({**entry, "data": "AAAA"}).encode(),  # digest mismatch
        lambda entry: json.dumps({**entry, "expires": "tomorrow"}).encode(),
        lambda entry: json.dumps({**entry, "expires": "2030-01-01T00:00:00"}).encode(),  # naive
        lambda entry: json.dumps({k: v for k, v in entry.items() if k != "sha256"}).encode(),
    ],
)
def test_corrupt_entries_are_ignored(cache: Cache, damage) -> None:  # noqa: ANN001
    cache.put(URL, b"data", LATER)
    path = cache.path(URL)
    path.write_bytes(damage(json.loads(path.read_bytes())))
    assert cache.get(URL) is None
    cache.put(URL, b"fresh", LATER)  # and a refetch replaces it
    assert cache.get(URL) == b"fresh"


def test_unwritable_cache_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = Cache(blocker / "cache", clock=Clock(NOW))
    cache.put(URL, b"data", LATER)  # no exception: caching is an optimisation
    assert cache.get(URL) is None


def test_existing_directory_keeps_its_mode(tmp_path: Path, clock: Clock) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    Cache(directory, clock=clock).put(URL, b"data", LATER)
    assert Cache(directory, clock=clock).get(URL) == b"data"
