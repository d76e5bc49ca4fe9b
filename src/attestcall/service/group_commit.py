"""Group commit: the small writes of many request threads in one transaction.

An EAR token's decision writes one audit record (and reads the deny-list in the same
transaction). Alone, that transaction cost the service more CPU than the ES384 signature of
the token: a connection checked out of the pool, BEGIN, two statements, COMMIT, returned.
Under load several request threads reach that point together, and what each pays for its
own transaction can be paid once for all of them.

There is no writer thread. A thread that submits its item while no commit is running leads:
it takes every item queued so far (its own among them), commits them with one call, and
hands each submitter its result. Threads that submit while a commit runs queue, and when it
ends one of them leads the next batch. Alone on the service, a thread commits its own item at
once, as before; under load a batch holds what arrived during the previous commit.

Nothing is acknowledged before it is committed: ``submit`` returns only after the
transaction holding the item committed, and raises its error (every item of a failed batch
gets the batch's error) otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    """An item, its outcome, and the lock its submitter sleeps on until it is woken: once
    the item is committed (``done``), or to lead the next batch."""

    __slots__ = ("item", "done", "result", "error", "_asleep")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        self._asleep = threading.Lock()
        self._asleep.acquire()

    def sleep(self) -> None:
        self._asleep.acquire()

    def wake(self) -> None:
        self._asleep.release()


class GroupCommit(Generic[T, R]):
    """``submit(item)`` from any thread: ``commit(items) -> results`` (one result per item,
    in order) runs once for each batch of items submitted together."""

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R]], *, limit: int = 256):
        if limit < 1:
            raise ValueError("a batch holds at least one item")
        self._commit = commit
        self._limit = limit
        self._queue: list[_Pending[T, R]] = []
        self._busy = False  # a leader is committing (or about to)
        self._lock = threading.Lock()
        self.batches = 0  # committed or failed, for the curious (tests, benchmarks)
        self.items = 0

    def submit(self, item: T) -> R:
        """``item`` committed (with whatever else was queued), and its result."""
        pending: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            lead = not self._busy
            self._busy = True
        if not lead:
            pending.sleep()  # woken when committed, or to lead
            if pending.done:
                return self._outcome(pending)
        while True:  # lead: commit what is queued, up to the limit
            with self._lock:
                batch = self._queue[:self._limit]
                del self._queue[:self._limit]
            self._run(batch)
            with self._lock:
                for each in batch:
                    each.done = True
                after = self._queue[0] if self._queue else None
                self._busy = after is not None
                self.batches += 1
                self.items += len(batch)
            for each in batch:  # only the threads whose items are done wake: no stampede
                if each is not pending:
                    each.wake()
            if not pending.done:
                continue  # ours was beyond the limit: lead the next batch too
            if after is not None:
                after.wake()  # not done: its thread leads the next batch
            return self._outcome(pending)

    def _run(self, batch: list[_Pending[T, R]]) -> None:
        try:
            results = self._commit([each.item for each in batch])
            if len(results) != len(batch):
                raise AssertionError(f"a commit of {len(batch)} items gave "
                                     f"{len(results)} results")
        except BaseException as error:  # noqa: BLE001 - each submitter raises it
            for each in batch:
                each.error = error
            return
        for each, result in zip(batch, results, strict=True):
            each.result = result

    @staticmethod
    def _outcome(pending: _Pending[T, R]) -> R:
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]
