"""A clock tests set by hand: ``clock()`` is ``clock.now`` (timezone-aware)."""

from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move on by ``datetime.timedelta(**delta)``."""
        self.now += dt.timedelta(**delta)
