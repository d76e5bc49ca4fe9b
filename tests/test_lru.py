"""attestcall.lru.Lru: true least-recently-used order, the size bound, thread safety."""

from __future__ import annotations

import random
import threading

import pytest

from attestcall.lru import Lru


def test_a_read_keeps_an_entry_that_a_fifo_would_drop() -> None:
    cache: Lru[str, int] = Lru(3)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("d", 4)  # a FIFO would drop "a" here
    assert "a" in cache
    assert "b" not in cache
    assert cache.keys() == ["c", "a", "d"]


def test_rewriting_an_entry_makes_it_most_recent() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.get("a") == 10
    assert cache.get("b") is None
    assert len(cache) == 2


def test_get_or_create_makes_once_and_counts_as_a_use() -> None:
    cache: Lru[str, int] = Lru(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(key)

    assert cache.get_or_create("xx", lambda: make("xx")) == 2
    assert cache.get_or_create("xx", lambda: make("xx")) == 2
    cache.put("y", 1)
    cache.get_or_create("xx", lambda: make("xx"))  # a use: "y" is now the oldest
    cache.put("z", 1)
    assert made == ["xx"]
    assert cache.keys() == ["xx", "z"]


def test_none_is_a_value_and_default_tells_it_from_absence() -> None:
    cache: Lru[str, str | None] = Lru(4)
    cache.put("ok", None)
    missing = object()
    assert cache.get("ok", missing) is None
    assert cache.get("absent", missing) is missing
    assert cache.get_or_create("ok", lambda: "made") is None


def test_a_failing_make_stores_nothing() -> None:
    cache: Lru[str, int] = Lru(4)

    def fail() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get_or_create("k", fail)
    assert "k" not in cache and len(cache) == 0


def test_clear_and_bad_size() -> None:
    cache: Lru[int, int] = Lru(1)
    cache.put(1, 1)
    cache.put(2, 2)
    assert cache.keys() == [2]
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        Lru(0)


def test_eight_threads_hammering_stay_bounded_and_consistent() -> None:
    size = 16
    cache: Lru[int, int] = Lru(size)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(4000):
                key = rng.randrange(48)  # three times the bound: constant eviction
                action = rng.randrange(10)
                if action < 4:
                    cache.put(key, key * 7)
                elif action < 7:
                    value = cache.get(key)
                    assert value is None or value == key * 7
                elif action < 9:
                    assert cache.get_or_create(key, lambda k=key: k * 7) == key * 7
                else:
                    assert len(cache) <= size
                    for seen in cache.keys():
                        assert 0 <= seen < 48
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 0 < len(cache) <= size
