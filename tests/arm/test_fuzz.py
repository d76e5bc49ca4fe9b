"""Fuzz targets for the CCA token (the long run: see tests/fuzz/mutate.py): mutations of
the public vector, and arbitrary CBOR inside both collection tags. Any input ends in an
appraisal or an EvidenceError, and an accepted one is the vector itself (every byte of a
CCA token is signed or is framing whose change breaks it)."""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from attestcall.arm.fetch import anchors
from attestcall.arm.formats import describe
from attestcall.arm.verify.appraise import appraise_cca
from attestcall.errors import EvidenceError
from tests.arm import tokens
from tests.fuzz.mutate import FUZZ, mutated

VECTOR = tokens.read(tokens.VECTOR)
STORE = anchors.load(tokens.DATA / "fvp_test_cpak.pub.pem")

_leaves = (st.integers(-(2 ** 64), 2 ** 64) | st.binary(max_size=70) | st.text(max_size=20)
           | st.booleans() | st.none())
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.integers(-3, 70000), inner, max_size=6),
                       max_leaves=30)


def _outcome(data: bytes) -> bool | None:
    """True accepted, False refused, None unusable; any other exception fails."""
    try:
        accepted = not appraise_cca(data, STORE).problems
        describe.describe_cca(data)
        return accepted
    except EvidenceError:
        return None


def test_the_vector_is_accepted():
    assert _outcome(VECTOR) is True


@FUZZ
@given(mutated(VECTOR))
def test_fuzz_the_vector(data):
    if _outcome(data):
        assert data == VECTOR


@FUZZ
@given(st.sampled_from([399, 907]), st.dictionaries(st.sampled_from([44234, 44241, 1]),
                                                    _values, max_size=3))
def test_fuzz_arbitrary_collections(tag, body):
    assert _outcome(cbor2.dumps(cbor2.CBORTag(tag, body))) is not True


@FUZZ
@given(_values, _values)
def test_fuzz_arbitrary_claims_in_cose_envelopes(platform, realm):
    def envelope(payload):
        return cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35}), {}, cbor2.dumps(payload),
                                              b"\x00" * 96]))

    data = cbor2.dumps(cbor2.CBORTag(399, {44234: envelope(platform), 44241: envelope(realm)}))
    assert _outcome(data) is not True
