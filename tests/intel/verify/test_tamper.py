"""Tampering: every single-bit flip of every byte of both real quotes, and every truncation.

A flip inside a quote (header, body, signature data: signatures, attestation key, QE report,
QE auth data, certification data and the PCK chain) must be rejected: EvidenceError for a
quote that no longer parses, or at least one problem. The real TDX quote is followed by 70
zero bytes that are not part of it (its signature-data length ends it): zero padding is
tolerated, so flipping any bit there makes the quote unusable. The collateral cache is warm
throughout, so each flip costs about the two signature checks of the quote (PCK-chain flips
recheck that chain).
"""

from __future__ import annotations

import datetime as dt

import pytest

from attestcall.appraisal import Appraisal
from attestcall.errors import EvidenceError
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.formats.tdx_quote import quote_length
from attestcall.intel.roots import intel_root
from attestcall.intel.verify.appraise import appraise_intel
from tests import paths

DATA = paths.DATA / "intel"
ROOTS = [intel_root()]

VECTORS = {
    "sgx": ("sgx_quote_v3", dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC), 432),
    "tdx": ("tdx_quote_v4", dt.datetime(2025, 7, 19, 10, 0, 33, tzinfo=dt.UTC), 632),
}


def _regions(quote: bytes, body_end: int) -> list[tuple[str, int, int]]:
    """Named byte ranges of a v3 or v4 quote (v4: the type-6 wrapper adds 6 bytes)."""
    sig = body_end + 4
    qe = sig + 128 + (6 if body_end == 632 else 0)
    auth_size = qe + 384 + 64
    auth_len = int.from_bytes(quote[auth_size : auth_size + 2], "little")
    cert = auth_size + 2 + auth_len
    end = quote_length(quote)
    regions = [
        ("header", 0, 48), ("body", 48, body_end), ("signature data length", body_end, sig),
        ("quote signature", sig, sig + 64), ("attestation key", sig + 64, sig + 128),
    ]  # fmt: skip
    if body_end == 632:
        regions.append(("type-6 certification data header", sig + 128, qe))
    regions += [
        ("QE report", qe, qe + 384), ("QE report signature", qe + 384, auth_size),
        ("QE auth data", auth_size, cert), ("certification data header", cert, cert + 6),
        ("PCK chain", cert + 6, end),
    ]  # fmt: skip
    return regions


def _outcome(quote: bytes, collateral: Collateral, at: dt.datetime) -> Appraisal | None:
    """The appraisal, or None when the quote is rejected as unusable (EvidenceError)."""
    try:
        return appraise_intel(quote, collateral=collateral, at=at, roots=ROOTS)
    except EvidenceError:
        return None


@pytest.mark.parametrize("which", ["sgx", "tdx"])
def test_every_bit_flip_inside_the_quote_is_rejected(which):
    name, at, body_end = VECTORS[which]
    quote = (DATA / f"{name}.bin").read_bytes()
    collateral = Collateral.load(DATA / f"{name}.collateral.json")
    baseline = _outcome(quote, collateral, at)
    assert baseline is not None and baseline.problems == []  # and the cache is warm
    end = quote_length(quote)
    regions = _regions(quote, body_end)
    assert regions[0][1] == 0 and regions[-1][2] == end
    accepted = []
    counts = {"evidence error": 0, "problem": 0}
    mutated = bytearray(quote)
    for position in range(end):
        original = mutated[position]
        for bit in range(8):
            mutated[position] = original ^ (1 << bit)
            result = _outcome(bytes(mutated), collateral, at)
            if result is None:
                counts["evidence error"] += 1
            elif result.problems:
                counts["problem"] += 1
            else:
                accepted.append((position, bit))
        mutated[position] = original
    named = [
        (next(r for r, lo, hi in regions if lo <= p < hi), p, b) for p, b in accepted
    ]  # fmt: skip
    assert named == [], f"accepted flips (region, offset, bit): {named[:20]}"
    assert sum(counts.values()) == 8 * end
    # Both kinds of rejection occur: signatures catch what still parses.
    assert counts["problem"] > 8 * 64 * 2 and counts["evidence error"] > 0


def test_bytes_after_the_tdx_quote_may_only_be_zero_padding():
    name, at, _ = VECTORS["tdx"]
    quote = (DATA / f"{name}.bin").read_bytes()
    collateral = Collateral.load(DATA / f"{name}.collateral.json")
    end = quote_length(quote)
    assert len(quote) - end == 70
    baseline = _outcome(quote, collateral, at)
    mutated = bytearray(quote)
    for position in range(end, len(quote)):
        for bit in range(8):
            mutated[position] ^= 1 << bit
            result = _outcome(bytes(mutated), collateral, at)
            mutated[position] ^= 1 << bit
            assert baseline is not None and result is None, (position, bit)


@pytest.mark.parametrize("which", ["sgx", "tdx"])
def test_every_truncation_is_an_evidence_error_or_a_problem(which):
    name, at, _ = VECTORS[which]
    quote = (DATA / f"{name}.bin").read_bytes()
    collateral = Collateral.load(DATA / f"{name}.collateral.json")
    end = quote_length(quote)
    for length in range(len(quote)):
        result = _outcome(quote[:length], collateral, at)
        if length < end:
            assert result is None or result.problems, length
        else:  # only the bytes after the quote are gone
            assert result is not None and result.problems == [], length
