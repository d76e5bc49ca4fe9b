"""Property tests: every parser and the appraisal, fed random bytes and mutated real inputs,
either succeed or raise their own error type (EvidenceError, CollateralError, the format
errors), never anything else."""

from __future__ import annotations

import datetime as dt
import json

from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestcall.appraisal import Appraisal
from attestcall.errors import CollateralError, EvidenceError
from attestcall.intel.formats.collateral import Collateral, parse_qe_identity, parse_tcb_info
from attestcall.intel.formats.pck import PckFormatError
from attestcall.intel.formats.quote import QuoteFormatError
from attestcall.intel.formats.tdx_quote import DcapQuote, TdReportBody, quote_length
from attestcall.intel.roots import intel_root
from attestcall.intel.verify.appraise import appraise_intel
from attestcall.intel.verify.tcb import platform_tcb
from tests import paths

DATA = paths.DATA / "intel"
SGX = (DATA / "sgx_quote_v3.bin").read_bytes()
TDX = (DATA / "tdx_quote_v4.bin").read_bytes()
SGX_JSON = json.loads((DATA / "sgx_quote_v3.collateral.json").read_text())
TDX_JSON = json.loads((DATA / "tdx_quote_v4.collateral.json").read_text())
COLLATERAL = {"sgx": Collateral.load(SGX_JSON), "tdx": Collateral.load(TDX_JSON)}
# the documented instants of INDEX.md (the TDX PCK CRL expires at 10:00:35)
AT = {"sgx": dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC),
      "tdx": dt.datetime(2025, 7, 19, 10, 0, 33, tzinfo=dt.UTC)}
ROOTS = [intel_root()]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few byte overwrites, a cut, an insertion or a deletion."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "cut", "insert", "delete"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _appraise(quote: bytes, which: str) -> Appraisal | None:
    try:
        return appraise_intel(quote, collateral=COLLATERAL[which], at=AT[which], roots=ROOTS)
    except EvidenceError:
        return None


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_are_an_evidence_error_or_an_appraisal(data):
    assert _appraise(data, "sgx") is None or isinstance(_appraise(data, "sgx"), Appraisal)


@PROPERTY
@given(st.binary(min_size=40, max_size=700))
def test_random_bytes_behind_a_valid_header(data):
    for header in (SGX[:48], TDX[:48]):
        result = _appraise(header + data, "tdx")
        assert result is None or result.problems


PEM_AT = SGX.index(b"-----BEGIN CERTIFICATE-----")  # the PCK chain, last in the quote
TDX_END = 4936  # the quote's own lengths end it here; zero bytes follow


def _same_chain(quote: bytes, base: bytes = SGX, end: int | None = None) -> bool:
    """The quote differs from ``base`` only in the PEM text of its PCK chain (which ends
    the quote, at ``end``), and that text still holds exactly the same certificates (a
    newline or the NUL after the PEM blocks changed: what no signature covers, and what
    carries no certificate bytes)."""
    start = base.index(b"-----BEGIN CERTIFICATE-----")
    end = len(base) if end is None else end
    if quote[:start] != base[:start] or len(quote) < end:
        return False
    try:
        return x509.load_pem_x509_certificates(quote[start:end]) == \
            x509.load_pem_x509_certificates(base[start:end])
    except ValueError:
        return False


@PROPERTY
@given(mutated(SGX))
def test_mutated_sgx_quote(quote):
    result = _appraise(quote, "sgx")
    assert result is None or isinstance(result, Appraisal)
    if quote != SGX and result is not None and not result.problems:
        # Only a change the quote does not cover can leave it accepted: bytes after its end,
        # or the framing of the PEM chain around the very same certificates.
        assert quote[: len(SGX)] == SGX or _same_chain(quote)


def test_the_pem_framing_is_not_covered():
    """The example Hypothesis found: the newline after the last END CERTIFICATE turned
    into a NUL is still the same chain, and accepted; a changed certificate byte is not."""
    framing = bytearray(SGX)
    framing[SGX.rindex(b"-----END CERTIFICATE-----") + 25] = 0
    result = _appraise(bytes(framing), "sgx")
    assert result is not None and not result.problems and _same_chain(bytes(framing))
    body = bytearray(SGX)
    body[PEM_AT + 100] ^= 1
    assert not _same_chain(bytes(body))


@PROPERTY
@given(mutated(TDX))
def test_mutated_tdx_quote(quote):
    result = _appraise(quote, "tdx")
    assert result is None or isinstance(result, Appraisal)
    if result is not None and not result.problems:
        assert quote[:TDX_END] == TDX[:TDX_END] or _same_chain(quote, TDX, TDX_END)


@PROPERTY
@given(st.one_of(st.binary(max_size=1200), mutated(TDX)))
def test_dcap_quote_parser(data):
    try:
        quote = DcapQuote.parse(data)
    except QuoteFormatError:
        return
    assert quote.pack() == data[: len(data) - quote.trailing]


@PROPERTY
@given(st.one_of(st.binary(max_size=200), mutated(SGX[:700]), mutated(TDX[:700])))
def test_quote_length(data):
    try:
        length = quote_length(data)
    except QuoteFormatError:
        return
    assert 48 < length <= len(data)


@PROPERTY
@given(st.binary(min_size=580, max_size=660))
def test_td_report_body(data):
    try:
        body = TdReportBody.unpack(data)
    except QuoteFormatError:
        assert len(data) not in (584, 648)
        return
    assert body.pack() == data


@PROPERTY
@given(st.one_of(st.binary(max_size=600), mutated(b"\x30\x82\x02\x26" + bytes(550))))
def test_platform_tcb(data):
    try:
        tcb = platform_tcb(data)
    except PckFormatError:
        return
    assert len(tcb.comp_svns) == 16 and len(tcb.fmspc) == 6


@PROPERTY
@given(mutated(SGX_JSON["tcb_info"].encode()), mutated(TDX_JSON["qe_identity"].encode()))
def test_signed_json_parsers(tcb_info, qe_identity):
    for parse, raw in ((parse_tcb_info, tcb_info), (parse_qe_identity, qe_identity)):
        try:
            parse(raw.decode("utf-8", "replace"))
        except CollateralError:
            pass


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@PROPERTY
@given(st.sampled_from(sorted(SGX_JSON)), JSON_VALUES)
def test_collateral_with_a_field_replaced(name, value):
    try:
        Collateral.load({**SGX_JSON, name: value})
    except CollateralError:
        pass


@PROPERTY
@given(mutated(json.dumps(TDX_JSON).encode()))
def test_collateral_text_mutated(text):
    try:
        collateral = Collateral.load(text)
    except CollateralError:
        return
    result = _appraise(TDX, "tdx") if collateral == COLLATERAL["tdx"] else None
    assert result is None or result.problems == []


@PROPERTY
@given(st.sampled_from(["tcb_info", "qe_identity"]), st.data())
def test_collateral_signed_text_mutated_then_appraised(name, data):
    text = data.draw(mutated(TDX_JSON[name].encode())).decode("utf-8", "replace")
    try:
        collateral = Collateral.load({**TDX_JSON, name: text})
    except CollateralError:
        return
    result = appraise_intel(TDX, collateral=collateral, at=AT["tdx"], roots=ROOTS)
    if text != TDX_JSON[name]:
        assert result.problems  # the signature covers every byte of the text
