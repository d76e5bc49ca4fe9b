"""What the fuzz targets share: how many examples, and mutations of a valid input.

The normal test run takes a short, seeded pass (``derandomize``: the same examples every
run). A long run, as issue 12's was, is the same targets with more examples and a random
seed::

    ATTESTCALL_FUZZ_EXAMPLES=200000 python3 -m pytest -p no:cacheprovider tests/fuzz

(add ``--hypothesis-seed=N`` to replay a run; ``-k sgx`` for one target). Every target
asserts that any input ends in a result or an :class:`attestcall.errors.AttestcallError`,
never another exception (an "internal error", exit 70, on the command line), and that no
accepted input differs from the valid one in a signed region.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("ATTESTCALL_FUZZ_EXAMPLES", "0") or 0)

FUZZ = settings(
    max_examples=EXAMPLES or 40,
    derandomize=not EXAMPLES,  # the normal run is seeded; a long run explores
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn, base: bytes, hot: tuple[int, int] | None = None) -> bytes:
    """``base`` with one to four edits: a bit flip, a byte set, bytes inserted or deleted,
    a truncation or an extension. ``hot``: a range edits favour (where the lengths are)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        if hot is not None and draw(st.booleans()):
            position = draw(st.integers(min(hot[0], size), min(hot[1], size)))
        else:
            position = draw(st.integers(0, size))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "extend"]))
        if kind == "flip" and position < size:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and position < size:
            data[position] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 64))]
        elif kind == "cut":
            del data[position:]
        elif kind == "extend":
            data += draw(st.sampled_from([bytes(1), bytes(70), b"\x01", b"\xff" * 9]))
    return bytes(data)
