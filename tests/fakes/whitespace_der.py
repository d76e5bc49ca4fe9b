"""DER that ends in a byte ``bytes.strip()`` takes for whitespace: a signature's last byte
is one of those six about once in 43 signings, and a parser that strips DER as if it were
text cuts it."""

from __future__ import annotations

from collections.abc import Callable

WHITESPACE = b" \t\n\v\f\r"
ATTEMPTS = 2000  # (250/256) ** 2000 < 1e-20: never all missed


def ending_in_whitespace(sign: Callable[[], bytes]) -> bytes:
    """The first of ``sign()``'s (randomised) signed DER encodings whose last byte is
    whitespace."""
    for _ in range(ATTEMPTS):
        der = sign()
        if der[-1:] in WHITESPACE:
            return der
    raise AssertionError(f"no signature out of {ATTEMPTS} ended in a whitespace byte")
