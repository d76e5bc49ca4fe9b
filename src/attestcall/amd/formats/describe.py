"""AMD evidence and certificates, field by field, for people: the SEV-SNP ATTESTATION_REPORT
with its GHCB certificate table, VCEK/VLEK certificates, and the SEV launch secret.

Names are AMD's: the report's fields, the guest policy, PLATFORM_INFO and TCB_VERSION as
the "SEV Secure Nested Paging Firmware ABI Specification" (56860) names them, the
certificate table's GUIDs as the GHCB specification names them, the VCEK extensions as the
"Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification" names
them. The SEV launch secret is a private key: only its algorithm and its public key's
fingerprint are described, never a byte of the private key. Nothing is verified here.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from attestcall import der
from attestcall import describe as common
from attestcall.amd.formats import certs, report
from attestcall.describe import Tree, hexs
from attestcall.errors import CollateralError

# Guest policy (ABI spec, "Guest Policy"): bits 7:0 ABI_MINOR, 15:8 ABI_MAJOR, then flags.
POLICY_BITS = {16: "SMT", 17: "RESERVED_MBO", 18: "MIGRATE_MA", 19: "DEBUG",
               20: "SINGLE_SOCKET", 21: "CXL_ALLOW", 22: "MEM_AES_256_XTS", 23: "RAPL_DIS",
               24: "CIPHERTEXT_HIDING", 25: "PAGE_SWAP_DISABLE"}
PLATFORM_INFO_BITS = {0: "SMT_EN", 1: "TSME_EN", 2: "ECC_EN", 3: "RAPL_DIS",
                      4: "CIPHERTEXT_HIDING_EN", 5: "ALIAS_CHECK_COMPLETE", 7: "TIO_EN"}
SIGNING_KEYS = {report.SIGNING_KEY_VCEK: "VCEK", report.SIGNING_KEY_VLEK: "VLEK",
                report.SIGNING_KEY_NONE: "none"}
SIGNATURE_ALGOS = {report.SIG_ECDSA_P384_SHA384: "ECDSA P-384 with SHA-384"}
TCB_FIELDS = ("CURRENT_TCB", "REPORTED_TCB", "COMMITTED_TCB", "LAUNCH_TCB")


def policy(value: int) -> Tree:
    out = common.flags(value, POLICY_BITS, 64)
    out = {"raw": out.pop("raw"), "ABI_MINOR": value & 0xFF, "ABI_MAJOR": value >> 8 & 0xFF,
           **out}
    out.pop("reserved_bits_set", None)
    unnamed = [bit for bit in range(26, 64) if value >> bit & 1]
    if unnamed:
        out["reserved_bits_set"] = unnamed
    return out


def tcb(value: int, product: str) -> Tree:
    """A TCB_VERSION by ``product``'s layout (Turin's differs from Milan's and Genoa's)."""
    decoded = report.decode_tcb(value, product)
    out: Tree = {"raw": f"{value:#018x}"}
    if decoded.fmc is not None:
        out["FMC"] = decoded.fmc
    out.update({"BOOT_LOADER": decoded.bootloader, "TEE": decoded.tee, "SNP": decoded.snp,
                "MICROCODE": decoded.microcode})
    return out


def _product(parsed: report.Report, table: list[certs.TableEntry]) -> tuple[str, str]:
    """The product whose TCB layout applies, and where that came from."""
    found = parsed.cpuid_product()
    if found is not None:
        return found, "CPUID_FAM_ID/CPUID_MOD_ID"
    for entry in table:
        if entry.guid in (certs.VCEK_GUID, certs.VLEK_GUID):
            try:
                return (certs.vek_extensions(certs.load_certificate(entry.data)).product,
                        f"the {entry.name} in the certificate table")
            except CollateralError:
                break
    return report.MILAN, "assumed (a version 2 report does not name its product; " \
        "Milan and Genoa share this layout, Turin's differs)"


def report_tree(parsed: report.Report, product: str) -> Tree:
    """Every field of an ATTESTATION_REPORT, in the specification's order."""
    r, s = parsed.signature_rs()
    out: Tree = {
        "VERSION": parsed.version,
        "GUEST_SVN": parsed.guest_svn,
        "POLICY": policy(parsed.policy),
        "FAMILY_ID": hexs(parsed.family_id),
        "IMAGE_ID": hexs(parsed.image_id),
        "VMPL": parsed.vmpl,
        "SIGNATURE_ALGO": {"value": parsed.signature_algo,
                           "name": SIGNATURE_ALGOS.get(parsed.signature_algo, "unknown")},
        "CURRENT_TCB": tcb(parsed.current_tcb, product),
        "PLATFORM_INFO": common.flags(parsed.platform_info, PLATFORM_INFO_BITS, 64),
        "AUTHOR_KEY_EN": parsed.author_key_en,
        "MASK_CHIP_KEY": parsed.mask_chip_key,
        "SIGNING_KEY": {"value": parsed.signing_key,
                        "name": SIGNING_KEYS.get(parsed.signing_key, "reserved")},
        "REPORT_DATA": hexs(parsed.report_data),
        "MEASUREMENT": hexs(parsed.measurement),
        "HOST_DATA": hexs(parsed.host_data),
        "ID_KEY_DIGEST": hexs(parsed.id_key_digest),
        "AUTHOR_KEY_DIGEST": hexs(parsed.author_key_digest),
        "REPORT_ID": hexs(parsed.report_id),
        "REPORT_ID_MA": hexs(parsed.report_id_ma),
        "REPORTED_TCB": tcb(parsed.reported_tcb, product),
    }
    if parsed.version >= 3:
        out.update(CPUID_FAM_ID=f"{parsed.cpuid_fam_id:#04x}",
                   CPUID_MOD_ID=f"{parsed.cpuid_mod_id:#04x}",
                   CPUID_STEP=f"{parsed.cpuid_step:#04x}")
    out.update({
        "CHIP_ID": hexs(parsed.chip_id),
        "COMMITTED_TCB": tcb(parsed.committed_tcb, product),
        "CURRENT_BUILD": parsed.current_build,
        "CURRENT_MINOR": parsed.current_minor,
        "CURRENT_MAJOR": parsed.current_major,
        "COMMITTED_BUILD": parsed.committed_build,
        "COMMITTED_MINOR": parsed.committed_minor,
        "COMMITTED_MAJOR": parsed.committed_major,
        "LAUNCH_TCB": tcb(parsed.launch_tcb, product),
    })
    if parsed.version >= 5:
        out.update(LAUNCH_MIT_VECTOR=f"{parsed.launch_mit_vector:#018x}",
                   CURRENT_MIT_VECTOR=f"{parsed.current_mit_vector:#018x}")
    out["SIGNATURE"] = {"R": f"{r:096x}", "S": f"{s:096x}"}
    return out


def vek_extensions(ext: certs.VekExtensions) -> Tree:
    out: Tree = {"structVersion": ext.struct_version, "productName": ext.product_name,
                 "blSPL": ext.bootloader, "teeSPL": ext.tee, "snpSPL": ext.snp,
                 "ucodeSPL": ext.microcode}
    if ext.fmc is not None:
        out["fmcSPL"] = ext.fmc
    if ext.hwid is not None:
        out["hwID"] = hexs(ext.hwid)
    if ext.csp_id is not None:
        out["cspId"] = ext.csp_id
    return out


def amd_certificate(cert: x509.Certificate) -> Tree:
    """A certificate, with AMD's VCEK/VLEK extensions decoded when it has them."""
    out = common.certificate(cert)
    if any(e["oid"].startswith(certs.OID_PREFIX + ".") for e in out["extensions"]):
        try:
            out["AMD Extensions"] = vek_extensions(certs.vek_extensions(cert))
        except CollateralError as exc:
            out["AMD Extensions"] = {"error": str(exc)}
    return out


def table_tree(entries: list[certs.TableEntry]) -> list[Tree]:
    out = []
    for entry in entries:
        item: Tree = {"guid": str(entry.guid), "name": certs.GUID_NAMES.get(entry.guid,
                                                                            "unknown"),
                      "size": len(entry.data)}
        try:
            item["certificate"] = amd_certificate(common.load_certificate(entry.data))
        except common.CERTIFICATE_ERRORS as exc:
            item["error"] = f"not a DER certificate: {exc}"
        out.append(item)
    return out


def describe_report(evidence: bytes) -> Tree | None:
    """An ATTESTATION_REPORT, with the certificate table after it when there is one;
    None when the bytes do not start like a report (the record's check)."""
    if len(evidence) < report.REPORT_SIZE:
        return None
    version, algo = int.from_bytes(evidence[:4], "little"), int.from_bytes(evidence[0x34:0x38],
                                                                           "little")
    if not 2 <= version <= 5 or algo != report.SIG_ECDSA_P384_SHA384:
        return None
    parsed = report.parse(evidence[:report.REPORT_SIZE])
    rest = evidence[report.REPORT_SIZE:]
    table = certs.parse_table(rest) if rest else []
    product, source = _product(parsed, table)
    return {"kind": "snp-report", "technology": "snp", "size": len(evidence),
            "product": {"name": product, "from": source},
            "report": report_tree(parsed, product),
            "certificate_table": table_tree(table) if rest else None}


def describe_vek_certificate(data: bytes) -> Tree | None:
    """A DER certificate carrying AMD's VCEK/VLEK extensions, else None."""
    if data[:1] != bytes([der.SEQUENCE]):
        return None
    try:
        cert = common.load_certificate(data)
        if not any(e.oid.dotted_string.startswith(certs.OID_PREFIX + ".")
                   for e in cert.extensions):
            return None
    except common.CERTIFICATE_ERRORS:
        return None
    return {"kind": "certificate", "certificate": amd_certificate(cert)}


def describe_snp(data: bytes) -> Tree | None:
    """The SNP record's describer: a report (+ table), or a VCEK/VLEK certificate."""
    tree = describe_report(data)
    return tree if tree is not None else describe_vek_certificate(data)


def describe_sev(data: bytes) -> Tree | None:
    """The SEV record's describer: the launch secret, a DER PKCS#8 PrivateKeyInfo. Only
    the algorithm and the SHA-256 of the public key's SubjectPublicKeyInfo are given."""
    if data[:1] != bytes([der.SEQUENCE]) or not _is_pkcs8(data):
        return None
    try:
        key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    public = common.public_key(key.public_key())
    return {"kind": "sev-launch-secret", "technology": "sev", "size": len(data),
            "format": "PKCS#8 PrivateKeyInfo (RFC 5208)",
            "algorithm": {k: v for k, v in public.items() if k != "spki_sha256"},
            "public_key_sha256": public.get("spki_sha256"),
            "note": "a private key: only its algorithm and public key are shown"}


def _is_pkcs8(data: bytes) -> bool:
    """SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key, ... } read without
    keeping anything (so a key in another encoding is not taken for a launch secret)."""
    try:
        items = der.decode(data).children()
        return (len(items) >= 3 and items[0].tag == der.INTEGER
                and items[1].tag == der.SEQUENCE and items[2].tag == der.OCTET_STRING)
    except (der.DerError, ValueError):
        return False
