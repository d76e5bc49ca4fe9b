"""The simulated TD quoting enclave: it refuses forged and altered TDREPORTs and signs
quotes v4 (TD 1.0 body) and v5 (TD 1.5 body) that parse strictly and verify."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.intel.formats.quote import TEE_TYPE_TDX, public_key_from_raw, signature_to_der
from attestcall.intel.formats.tdx_quote import BODY_TD10, BODY_TD15, DcapQuote, TdReportBody
from attestcall.intel.sim.tdx import (
    QE_AUTH_DATA,
    ReportRejected,
    SimulatedTdxModule,
    TdIdentity,
    TdQuotingEnclave,
    TdxState,
)

NONCE = hashlib.sha512(b"quote nonce").digest()
ECDSA = ec.ECDSA(hashes.SHA256())


@pytest.fixture(scope="module")
def tdreport(state: TdxState) -> bytes:
    return SimulatedTdxModule(state).report(NONCE, TdIdentity.for_payload(b"quoted payload"))


@pytest.fixture(scope="module", params=[4, 5])
def service(request: pytest.FixtureRequest, state: TdxState) -> TdQuotingEnclave:
    return TdQuotingEnclave(state, request.param)


def test_quote_parses_and_carries_the_tdreport(
    service: TdQuotingEnclave, tdreport: bytes, state: TdxState
) -> None:
    data = service.quote(tdreport)
    assert len(data) == service.quote_size()
    quote = DcapQuote.parse(data)
    assert quote.trailing == 0
    header = quote.header
    assert (header.version, header.tee_type) == (service.version, TEE_TYPE_TDX)
    assert header.att_key_type == 2
    assert header.user_data == state.qe_id + bytes(4)
    body = quote.body
    assert isinstance(body, TdReportBody)
    assert quote.body_type == (BODY_TD10 if service.version == 4 else BODY_TD15)
    assert body.is_td15 == (service.version == 5)
    assert body.report_data == NONCE
    assert body.mr_td == TdIdentity.for_payload(b"quoted payload").mrtd
    assert body.tee_tcb_svn == state.tee_tcb_info.tee_tcb_svn
    assert body.mr_seam == state.tee_tcb_info.mr_seam
    assert not body.debug
    assert quote.pack() == data


def test_quote_signatures_and_chain(service: TdQuotingEnclave, tdreport: bytes,
                                    state: TdxState) -> None:  # fmt: skip
    quote = DcapQuote.parse(service.quote(tdreport))
    public_key_from_raw(quote.attestation_key).verify(
        signature_to_der(quote.signature), quote.signed, ECDSA
    )
    qe = quote.qe
    assert qe.qe_report.isv_prod_id == 2 and qe.qe_report.mr_signer == state.qe_identity.mrsigner
    assert qe.qe_auth_data == QE_AUTH_DATA
    binding = hashlib.sha256(quote.attestation_key + QE_AUTH_DATA).digest() + bytes(32)
    assert qe.qe_report.report_data == binding
    chain = [x509.load_pem_x509_certificate(p) for p in quote.certification_data.pem_certificates()]
    assert chain == [state.sgx.pck_cert, state.sgx.platform_ca_cert, state.sgx.root_cert]
    chain[0].public_key().verify(signature_to_der(qe.qe_report_signature), qe.qe_report.pack(),
                                 ECDSA)  # fmt: skip


def test_each_quote_is_freshly_signed(service: TdQuotingEnclave, tdreport: bytes) -> None:
    a, b = DcapQuote.parse(service.quote(tdreport)), DcapQuote.parse(service.quote(tdreport))
    assert a.signed == b.signed and a.signature != b.signature  # ECDSA is randomised


@pytest.mark.parametrize(
    "offset",
    [0x10, 0x30, 0x80, 0xBF, 0xC0, 0xE0, 0xFF, 0x100, 0x108, 0x118, 0x1F0, 0x200, 0x210, 0x3FF],
    ids=lambda o: f"byte-{o:#x}",
)
def test_an_altered_tdreport_is_refused(
    service: TdQuotingEnclave, tdreport: bytes, offset: int
) -> None:
    altered = bytearray(tdreport)
    altered[offset] ^= 0x01
    with pytest.raises(ReportRejected):
        service.quote(bytes(altered))


def test_a_forged_tdreport_is_refused(service: TdQuotingEnclave, tdreport: bytes,
                                      state: TdxState) -> None:  # fmt: skip
    """A host that writes its own TDREPORT (hashes consistent, another nonce) cannot MAC it."""
    forged = bytearray(tdreport)
    forged[128:192] = bytes(64)
    for key in (bytes(32), state.sgx.cpu_secret):  # a guessed key, and the raw secret
        forged[224:256] = hmac.new(key, bytes(forged[:224]), hashlib.sha256).digest()
        with pytest.raises(ReportRejected, match="MAC"):
            service.quote(bytes(forged))


def test_a_tdreport_with_a_swapped_tdinfo_is_refused(
    service: TdQuotingEnclave, tdreport: bytes, state: TdxState
) -> None:
    """The MAC'd hashes bind TDINFO: another TD's TDINFO under this MAC is refused."""
    other = SimulatedTdxModule(state).report(NONCE, TdIdentity.for_payload(b"other"))
    spliced = tdreport[:512] + other[512:]
    with pytest.raises(ReportRejected, match="TEE_INFO_HASH"):
        service.quote(spliced)


@pytest.mark.parametrize("data", [b"", bytes(1024), b"\x81" + bytes(1023)])
def test_garbage_is_refused(service: TdQuotingEnclave, data: bytes) -> None:
    with pytest.raises(ReportRejected):
        service.quote(data)


def test_only_versions_4_and_5(state: TdxState) -> None:
    with pytest.raises(ValueError, match="4 or 5"):
        TdQuotingEnclave(state, 3)
