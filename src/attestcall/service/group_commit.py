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
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` from any thread: ``commit(items) -> results`` (one result per item,
    in order) runs once for each batch of items submitted together."""

    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R]], *, limit: int = 256):
        if limit < 1:
            raise ValueError("a batch holds at least one item")
        self._commit = commit
        self._limit = limit
        self._queue: list[_Pending[T, R]] = []
        self._busy = False
        self._changed = threading.Condition(threading.Lock())
        self.batches = 0  # committed or failed, for the curious (tests, benchmarks)
        self.items = 0

    def submit(self, item: T) -> R:
        """``item`` committed (with whatever else was queued), and its result."""
        pending: _Pending[T, R] = _Pending(item)
        with self._changed:
            self._queue.append(pending)
        while True:
            with self._changed:
                while self._busy and not pending.done:
                    self._changed.wait()
                if pending.done:
                    return self._outcome(pending)
                self._busy = True  # lead: commit what is queued, up to the limit
                batch = self._queue[:self._limit]
                del self._queue[:self._limit]
            try:
                self._run(batch)
            finally:
                with self._changed:
                    for each in batch:
                        each.done = True
                    self._busy = False
                    self.batches += 1
                    self.items += len(batch)
                    self._changed.notify_all()

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
