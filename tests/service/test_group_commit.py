"""Group commit (service/group_commit.py): items submitted while a commit runs go into the
next one together; each submitter gets its own result, or its batch's error, and only
after its batch committed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from attestcall.errors import StorageUnavailable
from attestcall.service.group_commit import GroupCommit

TIMEOUT = 30.0  # seconds any wait of these tests may take before it fails


class Gate:
    """A commit function that records its batches and holds the first one until released,
    so that the other submitters queue meanwhile."""

    def __init__(self, fail: set[int] | None = None):
        self.batches: list[list[int]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()
        self.fail = fail or set()  # batch numbers that raise
        self.committed: set[int] = set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.release.wait(TIMEOUT)
        if len(self.batches) - 1 in self.fail:
            raise StorageUnavailable("the database is down")
        self.committed.update(items)
        return [item * 10 for item in items]


def queued(group: GroupCommit, count: int) -> None:
    """Wait until ``count`` items wait in the queue."""
    for _ in range(int(TIMEOUT / 0.005)):
        with group._lock:
            if len(group._queue) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} items never queued")


def run_all(group: GroupCommit, items: list[int], gate: Gate, waiting: int) -> dict:
    """Submit ``items[0]`` first (it leads and blocks in the gate), then the rest from their
    own threads; release the gate once ``waiting`` of them queued. Each item's result or
    error, and whether its batch had committed when its submit returned."""
    outcomes: dict[int, object] = {}

    def submit(item: int) -> None:
        try:
            result = group.submit(item)
            outcomes[item] = (result, item in gate.committed)
        except StorageUnavailable as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=submit, args=(items[0],))]
    threads[0].start()
    assert gate.first_running.wait(TIMEOUT)
    for item in items[1:]:
        thread = threading.Thread(target=submit, args=(item,))
        thread.start()
        threads.append(thread)
    queued(group, waiting)
    gate.release.set()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    return outcomes


def test_items_submitted_during_a_commit_share_the_next_one():
    gate = Gate()
    group = GroupCommit(gate)
    outcomes = run_all(group, list(range(1, 9)), gate, waiting=7)
    assert gate.batches[0] == [1]
    assert sorted(gate.batches[1]) == list(range(2, 9)) and len(gate.batches) == 2
    # each submitter its own result, returned only once its item was committed
    assert outcomes == {item: (item * 10, True) for item in range(1, 9)}
    assert (group.batches, group.items) == (2, 8)


def test_alone_an_item_is_committed_at_once():
    calls = []
    group = GroupCommit(lambda items: calls.append(list(items)) or [len(calls)] * len(items))
    assert [group.submit(n) for n in (5, 6, 7)] == [1, 2, 3]
    assert calls == [[5], [6], [7]]


def test_a_batch_is_bounded_by_the_limit():
    gate = Gate()
    group = GroupCommit(gate, limit=3)
    outcomes = run_all(group, list(range(1, 9)), gate, waiting=7)
    assert outcomes == {item: (item * 10, True) for item in range(1, 9)}
    assert [len(b) for b in gate.batches] == [1, 3, 3, 1]
    assert sorted(sum(gate.batches, [])) == list(range(1, 9))


def test_every_item_of_a_failed_batch_gets_its_error_and_the_next_batch_commits():
    gate = Gate(fail={1})
    group = GroupCommit(gate)
    outcomes = run_all(group, list(range(1, 6)), gate, waiting=4)
    assert outcomes[1] == (10, True)
    for item in range(2, 6):
        assert isinstance(outcomes[item], StorageUnavailable)
    assert gate.committed == {1}
    assert group.submit(9) == 90  # not stuck: the failed batch's leader let go


def test_a_commit_giving_the_wrong_number_of_results_is_an_error_not_a_mismatch():
    group = GroupCommit(lambda items: [1, 2])
    with pytest.raises(AssertionError, match="1 items gave 2 results"):
        group.submit(1)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        GroupCommit(lambda items: items, limit=0)


@pytest.mark.parametrize("limit", [1, 3, 256])
def test_many_threads_each_get_their_own_result_and_every_item_is_committed_once(limit):
    committed: list[int] = []
    guard = threading.Lock()

    def commit(items: Sequence[int]) -> list[int]:
        with guard:
            committed.extend(items)
        threading.Event().wait(0.0002 * (len(committed) % 3))  # a commit takes a while
        return [-item for item in items]

    group = GroupCommit(commit, limit=limit)
    wrong: list[tuple[int, int]] = []

    def submitter(base: int) -> None:
        for n in range(base, base + 150):
            if (answer := group.submit(n)) != -n:
                wrong.append((n, answer))

    threads = [threading.Thread(target=submitter, args=(1000 * t,)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a submitter never returned"
    assert wrong == []
    assert sorted(committed) == sorted(n for t in range(12) for n in range(1000 * t,
                                                                            1000 * t + 150))
    assert group.items == 1800 and group.batches <= 1800
    assert not group._busy and group._queue == []
