"""Intel DCAP quotes (v3, v4, v5) and PCK certificates, field by field, for people.

Names are Intel's: the quote header, the ISV enclave report and the TD quote body as the
"Intel SGX ECDSA Quote Library API" and "Intel TDX DCAP Quoting Library API" name them
(Appendix A: "Version", "MRENCLAVE", "TDATTRIBUTES", ...), the ATTRIBUTES flags, MISCSELECT
and XFRM/XFAM bits as the Intel SDM names them (vol. 3D, SECS; vol. 1, XCR0), the TD
attributes as the TDX module ABI names them, and the PCK certificate's SGX extension as the
"SGX PCK Certificate and CRL Profile" names it. Nothing is verified here; see
:mod:`attestcall.describe` for the tree these functions return.
"""

from __future__ import annotations

from cryptography import x509

from attestcall import describe
from attestcall.describe import Tree, hexs
from attestcall.intel.formats import pck
from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    HEADER_SIZE,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
)
from attestcall.intel.formats.structs import ReportBody
from attestcall.intel.formats.tdx_quote import (
    BODY_SGX,
    BODY_TD10,
    BODY_TD15,
    DcapQuote,
    TdReportBody,
)

ATTESTATION_KEY_TYPES = {2: "ECDSA-256-with-P-256 curve", 3: "ECDSA-384-with-P-384 curve"}
TEE_TYPES = {TEE_TYPE_SGX: "SGX", TEE_TYPE_TDX: "TDX"}
BODY_TYPES = {BODY_SGX: "SGX enclave report", BODY_TD10: "TD report (TDX 1.0)",
              BODY_TD15: "TD report (TDX 1.5)"}
CERTIFICATION_DATA_TYPES = {
    1: "PPID in plain text, CPUSVN and PCESVN",
    2: "PPID encrypted using RSA-2048-OAEP, CPUSVN and PCESVN",
    3: "PPID encrypted using RSA-3072-OAEP, CPUSVN and PCESVN",
    4: "PCK leaf certificate",
    5: "Concatenated PCK Cert Chain",
    6: "QE Report Certification Data",
    7: "Platform Manifest",
}

# SECS.ATTRIBUTES.FLAGS (Intel SDM vol. 3D, 34.7.1)
SGX_ATTRIBUTE_FLAGS = {0: "INIT", 1: "DEBUG", 2: "MODE64BIT", 4: "PROVISIONKEY",
                       5: "EINITTOKEN_KEY", 6: "CET", 7: "KSS", 10: "AEXNOTIFY"}
# XCR0 / XFRM / XFAM state components (Intel SDM vol. 1, 13.1)
XSAVE_FEATURES = {0: "X87", 1: "SSE", 2: "AVX", 3: "BNDREGS", 4: "BNDCSR", 5: "OPMASK",
                  6: "ZMM_HI256", 7: "HI16_ZMM", 8: "PT", 9: "PKRU", 10: "PASID", 11: "CET_U",
                  12: "CET_S", 13: "HDC", 14: "UINTR", 15: "LBR", 16: "HWP", 17: "XTILECFG",
                  18: "XTILEDATA", 19: "APX"}
MISCSELECT_BITS = {0: "EXINFO", 1: "CPINFO"}
# TDATTRIBUTES (TDX module ABI; Linux arch/x86/include/asm/shared/tdx.h)
TD_ATTRIBUTES = {0: "DEBUG", 4: "HGS_PLUS_PROF", 5: "PERF_PROF", 6: "PMT_PROF", 16: "ICSSD",
                 27: "LASS", 28: "SEPT_VE_DISABLE", 29: "MIGRATABLE", 30: "PKS", 31: "KL",
                 62: "TPA", 63: "PERFMON"}
SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "Scalable with Integrity"}


def _u64(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _svns(data: bytes) -> list[int]:
    return list(data)


def header(value: QuoteHeader) -> Tree:
    v3 = value.version == 3
    return {
        "Version": value.version,
        "Attestation Key Type": {"value": value.att_key_type,
                                 "name": ATTESTATION_KEY_TYPES.get(value.att_key_type,
                                                                   "unknown")},
        "TEE Type": {"value": f"{value.tee_type:#x}",
                     "name": TEE_TYPES.get(value.tee_type, "unknown")},
        ("QE SVN" if v3 else "Reserved (QE SVN)"): value.qe_svn,
        ("PCE SVN" if v3 else "Reserved (PCE SVN)"): value.pce_svn,
        "QE Vendor ID": value.qe_vendor_id.hex(),
        "User Data": hexs(value.user_data),
    }


def attributes(raw: bytes) -> Tree:
    """SGX ATTRIBUTES: FLAGS then XFRM."""
    return {"FLAGS": describe.flags(_u64(raw[:8]), SGX_ATTRIBUTE_FLAGS, 64),
            "XFRM": describe.flags(_u64(raw[8:]), XSAVE_FEATURES, 64)}


def sgx_report_body(body: ReportBody) -> Tree:
    """An SGX REPORT body (the ISV enclave report of a quote, or the QE report)."""
    return {
        "CPUSVN": {"raw": hexs(body.cpu_svn), "components": _svns(body.cpu_svn)},
        "MISCSELECT": describe.flags(body.misc_select, MISCSELECT_BITS, 32),
        "ISVEXTPRODID": hexs(body.isv_ext_prod_id),
        "ATTRIBUTES": attributes(body.attributes),
        "MRENCLAVE": hexs(body.mr_enclave),
        "MRSIGNER": hexs(body.mr_signer),
        "CONFIGID": hexs(body.config_id),
        "ISVPRODID": body.isv_prod_id,
        "ISVSVN": body.isv_svn,
        "CONFIGSVN": body.config_svn,
        "ISVFAMILYID": hexs(body.isv_family_id),
        "REPORTDATA": hexs(body.report_data),
    }


def td_report_body(body: TdReportBody) -> Tree:
    """A TD quote body, TDX 1.0 (584 bytes) or 1.5 (648)."""
    out: Tree = {
        "TEE_TCB_SVN": {"raw": hexs(body.tee_tcb_svn), "components": _svns(body.tee_tcb_svn)},
        "MRSEAM": hexs(body.mr_seam),
        "MRSIGNERSEAM": hexs(body.mr_signer_seam),
        "SEAMATTRIBUTES": describe.flags(_u64(body.seam_attributes), {}, 64),
        "TDATTRIBUTES": describe.flags(_u64(body.td_attributes), TD_ATTRIBUTES, 64),
        "XFAM": describe.flags(_u64(body.xfam), XSAVE_FEATURES, 64),
        "MRTD": hexs(body.mr_td),
        "MRCONFIGID": hexs(body.mr_config_id),
        "MROWNER": hexs(body.mr_owner),
        "MROWNERCONFIG": hexs(body.mr_owner_config),
        "RTMR0": hexs(body.rtmr0),
        "RTMR1": hexs(body.rtmr1),
        "RTMR2": hexs(body.rtmr2),
        "RTMR3": hexs(body.rtmr3),
        "REPORTDATA": hexs(body.report_data),
    }
    if body.tee_tcb_svn2 is not None and body.mr_service_td is not None:
        out["TEE_TCB_SVN_2"] = {"raw": hexs(body.tee_tcb_svn2),
                                "components": _svns(body.tee_tcb_svn2)}
        out["MRSERVICETD"] = hexs(body.mr_service_td)
    return out


def sgx_extension(ext: pck.PckExtension) -> Tree:
    """The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1)."""
    tcb: Tree = {f"SGX TCB Comp{i:02d} SVN": svn
                 for i, svn in enumerate(ext.tcb.comp_svns, start=1)}
    tcb["PCESVN"] = ext.tcb.pce_svn
    tcb["CPUSVN"] = hexs(ext.tcb.cpu_svn)
    out: Tree = {
        "PPID": hexs(ext.ppid),
        "TCB": tcb,
        "PCE-ID": hexs(ext.pce_id),
        "FMSPC": hexs(ext.fmspc),
        "SGX Type": {"value": ext.sgx_type, "name": SGX_TYPES.get(ext.sgx_type, "unknown")},
    }
    if ext.platform_instance_id is not None:
        out["PlatformInstanceID"] = hexs(ext.platform_instance_id)
    if ext.configuration is not None:
        out["Configuration"] = {
            "Dynamic Platform": ext.configuration.dynamic_platform,
            "Cached Keys": ext.configuration.cached_keys,
            "SMT Enabled": ext.configuration.smt_enabled,
        }
    return out


def pck_certificate(cert: x509.Certificate) -> Tree:
    """A certificate, with its SGX extension decoded when it has one (a PCK certificate)."""
    out = describe.certificate(cert)
    try:
        out["SGX Extensions"] = sgx_extension(pck.PckExtension.from_certificate(cert))
    except pck.PckFormatError as exc:
        if "has no SGX extension" not in str(exc):
            out["SGX Extensions"] = {"error": str(exc)}
    return out


def certification_data(data: CertificationData) -> Tree:
    out: Tree = {
        "Certification Data Type": {"value": data.cert_type,
                                    "name": CERTIFICATION_DATA_TYPES.get(data.cert_type,
                                                                         "unknown")},
        "Size": len(data.data),
    }
    if data.cert_type == CERT_PCK_CHAIN:
        chain = []
        for pem in data.pem_certificates():
            try:
                chain.append(pck_certificate(x509.load_pem_x509_certificate(pem)))
            except describe.CERTIFICATE_ERRORS as exc:
                chain.append({"error": f"not a usable certificate: {exc}"})
        out["PCK Certificate Chain"] = chain
        pcks = [c["SGX Extensions"] for c in chain if "FMSPC" in c.get("SGX Extensions", {})]
        if pcks:
            out["FMSPC"] = pcks[0]["FMSPC"]
    else:
        out["Certification Data"] = hexs(data.data)
    return out


def qe_report_certification(qe: QeReportCertificationData) -> Tree:
    return {
        "QE Report": sgx_report_body(qe.qe_report),
        "QE Report Signature": hexs(qe.qe_report_signature),
        "QE Authentication Data": hexs(qe.qe_auth_data),
        "QE Certification Data": certification_data(qe.certification_data),
    }


def _quote_tree(technology: str, size: int, trailing: int, head: QuoteHeader,
                descriptor: Tree | None, body: Tree, signature: Tree) -> Tree:
    out: Tree = {"kind": f"{technology}-quote", "technology": technology, "size": size,
                 "trailing_bytes": trailing, "header": header(head)}
    if descriptor is not None:
        out["body_descriptor"] = descriptor
    out["body"] = body
    out["signature_data"] = signature
    return out


def describe_quote(evidence: bytes, tee_type: int) -> Tree | None:
    """The tree of a DCAP quote v3, v4 or v5 of ``tee_type`` (SGX or TDX); None when the
    bytes do not start with such a quote's header from Intel's QE; QuoteFormatError when
    they do but do not parse."""
    if len(evidence) < HEADER_SIZE:
        return None
    head = QuoteHeader.unpack(evidence[:HEADER_SIZE])
    if (head.qe_vendor_id != INTEL_QE_VENDOR_ID or head.version not in (3, 4, 5)
            or head.tee_type != tee_type):
        return None
    if head.version == 3:
        quote = Quote.parse(evidence)
        data = quote.signature_data
        return _quote_tree(
            "sgx", len(evidence), 0, quote.header, None, sgx_report_body(quote.body),
            {"ISV Enclave Report Signature": hexs(data.signature),
             "ECDSA Attestation Key": hexs(data.attestation_key),
             **qe_report_certification(data.qe)})
    dcap = DcapQuote.parse(evidence)
    body: Tree
    if isinstance(dcap.body, TdReportBody):
        body = td_report_body(dcap.body)
    else:
        body = sgx_report_body(dcap.body)
    descriptor = None
    if head.version >= 5:
        descriptor = {"Type": {"value": dcap.body_type, "name": BODY_TYPES[dcap.body_type]},
                      "Size": len(dcap.body.pack())}
    signature = {
        "Quote Signature": hexs(dcap.signature),
        "ECDSA Attestation Key": hexs(dcap.attestation_key),
        "Certification Data Type": {"value": 6, "name": CERTIFICATION_DATA_TYPES[6]},
        "QE Report Certification Data": qe_report_certification(dcap.qe),
    }
    technology = "tdx" if tee_type == TEE_TYPE_TDX else "sgx"
    return _quote_tree(technology, len(evidence) - dcap.trailing, dcap.trailing, dcap.header,
                       descriptor, body, signature)


def describe_pck_certificate(data: bytes) -> Tree | None:
    """A DER certificate carrying Intel's SGX extension (a PCK certificate), else None."""
    if not data[:1] == b"\x30":
        return None
    try:
        cert = describe.load_certificate(data)
        cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(pck.SGX_EXTENSION_OID))
    except (x509.ExtensionNotFound, *describe.CERTIFICATE_ERRORS):
        return None
    return {"kind": "certificate", "certificate": pck_certificate(cert)}


def describe_sgx(data: bytes) -> Tree | None:
    """The SGX record's describer: a quote of TEE type SGX, or a PCK certificate."""
    tree = describe_quote(data, TEE_TYPE_SGX)
    return tree if tree is not None else describe_pck_certificate(data)


def describe_tdx(data: bytes) -> Tree | None:
    """The TDX record's describer: a quote of TEE type TDX."""
    return describe_quote(data, TEE_TYPE_TDX)
