"""Certificates and certificate requests attestcall deals in, described without trusting them.

- a keep's certificate (:mod:`attestcall.deploy.identity`): the evidence in its CMW
  extension, decoded by its TEE's describer, and whether it is bound to the certificate's
  key (:func:`~attestcall.deploy.identity.check_binding`);
- an attestation service's certificate: the EAR claims-set of its result extension
  (:mod:`attestcall.service.result`);
- a keep's CSR to the service (:mod:`attestcall.service.csr`): its challenge, evidence and
  binding to key and challenge;
- any other certificate: subject, issuer, validity, key, extensions.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from attestcall import describe
from attestcall.describe import Tree
from attestcall.errors import AttestcallError, EvidenceError
from attestcall.tees import registry


def _evidence(technology: int, evidence: bytes) -> Tree:
    tee = registry().by_id(technology)
    out: Tree = {"technology": tee.name if tee is not None else str(technology),
                 "technology_id": technology,
                 "media_type": tee.media_type if tee is not None else None,
                 "size": len(evidence)}
    if not evidence:
        out["decoded"] = None
        return out
    from attestcall.show import describe_bytes

    try:
        out["decoded"] = describe_bytes(evidence)
    except EvidenceError as exc:
        out["decoded"] = {"error": str(exc)}
    return out


def _carried_evidence(extensions: x509.Extensions, what: str) -> tuple[Tree | None,
                                                                     tuple[int, bytes] | None]:
    """The ``evidence`` entry (None when there is no CMW extension) and what it held."""
    from attestcall.deploy.cmw import CMW_EXTENSION_OID
    from attestcall.deploy.identity import CertificateEvidenceError, evidence_from_extensions

    if not any(e.oid.dotted_string == CMW_EXTENSION_OID for e in extensions):
        return None, None
    try:
        technology, evidence = evidence_from_extensions(extensions, what=what)
    except CertificateEvidenceError as exc:
        return {"error": str(exc)}, None
    return _evidence(technology, evidence), (technology, evidence)


def _binding(check: Any) -> Tree:
    """Run ``check()``: ``holds`` True, or False with why."""
    try:
        check()
    except AttestcallError as exc:
        return {"holds": False, "detail": str(exc)}
    return {"holds": True, "detail": None}


def certificate_tree(cert: x509.Certificate) -> Tree:
    from attestcall.deploy.identity import check_binding
    from attestcall.service import result

    out: Tree = {"kind": "certificate", "certificate": describe.certificate(cert)}
    evidence, carried = _carried_evidence(cert.extensions, "certificate")
    if evidence is not None:
        out["kind"] = "keep-certificate"
        out["evidence"] = evidence
        out["binding"] = None
        if carried is not None:
            technology, blob = carried
            tee = registry().by_id(technology)
            if tee is None or tee.report_data is None:  # a keep without a TEE: nothing bound
                out["binding"] = {"holds": False, "detail": "the keep has no evidence that "
                                  "could bind its key (technology "
                                  f"{tee.label if tee is not None else technology})"}
            else:
                out["binding"] = _binding(lambda: check_binding(cert, blob, technology))
    try:
        found = result.from_certificate(cert)
    except result.MalformedResult as exc:
        out["kind"] = "service-certificate"
        out["attestation_result"] = {"error": str(exc)}
    else:
        if found is not None:
            out["kind"] = "service-certificate"
            out["attestation_result"] = found.claims
    return out


def csr_tree(csr: x509.CertificateSigningRequest, data: bytes) -> Tree:
    from cryptography.x509.oid import AttributeOID

    from attestcall.service import csr as csrs

    try:
        signature_valid = csr.is_signature_valid
    except (ValueError, TypeError, describe.CERTIFICATE_ERRORS[3]):
        signature_valid = False
    challenges = [a.value.decode("utf-8", "replace") for a in csr.attributes
                  if a.oid == AttributeOID.CHALLENGE_PASSWORD]
    body: Tree = {
        "subject": csr.subject.rfc4514_string(),
        "public_key": describe.public_key(csr.public_key()),
        "signature_algorithm": csr.signature_algorithm_oid._name,
        "signature_valid": signature_valid,
        "challengePassword": challenges[0] if len(challenges) == 1 else challenges or None,
        "extensions": describe.extension_list(csr.extensions),
    }
    out: Tree = {"kind": "csr", "csr": body}
    evidence, carried = _carried_evidence(csr.extensions, "request")
    out["evidence"] = evidence
    out["binding"] = None
    if carried is not None:
        def check() -> None:
            csrs.check_binding(csrs.read_csr(data))

        out["binding"] = _binding(check)
    return out


def describe_x509(data: bytes) -> Tree | None:
    """A DER certificate or PKCS#10 request, else None."""
    if data[:1] != b"\x30":
        return None
    try:
        cert = describe.load_certificate(data)
    except describe.CERTIFICATE_ERRORS:
        cert = None
    try:
        if cert is not None:
            return certificate_tree(cert)
        try:
            request = x509.load_der_x509_csr(data)
        except describe.CERTIFICATE_ERRORS:
            return None
        return csr_tree(request, data)
    except describe.CERTIFICATE_ERRORS as exc:
        raise EvidenceError(f"a malformed X.509 structure: {' '.join(str(exc).split())}") \
            from None
