"""`attestcall show` on the real-hardware vectors of tests/data: the values their
PROVENANCE.md and the vendors' own tools give, field by field."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestcall.amd.formats import certs
from tests import paths
from tests.show.helpers import assert_documented, process, run, shown

INTEL, AMD = paths.DATA / "intel", paths.DATA / "amd"
SGX, TDX = INTEL / "sgx_quote_v3.bin", INTEL / "tdx_quote_v4.bin"
MILAN, MILAN_DEBUG = AMD / "milan_report_v2.bin", AMD / "milan_report_v2_debug.bin"


def test_sgx_quote_v3(capsys):
    tree = shown(capsys, SGX)
    assert_documented(tree)
    assert (tree["kind"], tree["technology"], tree["size"], tree["trailing_bytes"]) == (
        "sgx-quote", "sgx", 4600, 0)
    header = tree["header"]
    assert header["Version"] == 3 and header["QE SVN"] == 10 and header["PCE SVN"] == 15
    assert header["Attestation Key Type"] == {"value": 2, "name": "ECDSA-256-with-P-256 curve"}
    assert header["QE Vendor ID"] == "939a7233f79c4ca9940a0db3957f0607"
    body = tree["body"]
    assert body["MRENCLAVE"] == ("33d8736db756ed4997e04ba358d27833"
                                 "188f1932ff7b1d156904d3f560452fbb")
    assert body["MRSIGNER"].startswith("815f42f1")
    assert bytes.fromhex(body["REPORTDATA"]).startswith(b"Hello, world!")
    flags = body["ATTRIBUTES"]["FLAGS"]
    assert flags["raw"] == "0x0000000000000005"
    assert (flags["INIT"], flags["DEBUG"], flags["MODE64BIT"], flags["PROVISIONKEY"]) == (
        True, False, True, False)
    xfrm = body["ATTRIBUTES"]["XFRM"]
    assert xfrm["raw"] == "0x00000000000000e7" and xfrm["AVX"] and not xfrm["PKRU"]
    assert body["CPUSVN"]["components"][:7] == [11, 11, 26, 24, 255, 255, 4]
    signature = tree["signature_data"]
    assert signature["QE Report"]["ATTRIBUTES"]["FLAGS"]["PROVISIONKEY"] is True
    assert signature["QE Report"]["ISVSVN"] == 10
    data = signature["QE Certification Data"]
    assert data["Certification Data Type"] == {"value": 5,
                                               "name": "Concatenated PCK Cert Chain"}
    assert data["FMSPC"] == "00a067110000"
    chain = data["PCK Certificate Chain"]
    assert [c["subject"].rsplit("CN=", 1)[1] for c in chain] == [
        "Intel SGX PCK Certificate", "Intel SGX PCK Processor CA", "Intel SGX Root CA"]
    leaf = chain[0]
    assert (leaf["not_before"], leaf["not_after"]) == ("2023-09-20T21:53:43Z",
                                                       "2030-09-20T21:53:43Z")
    sgx = leaf["SGX Extensions"]
    assert sgx["FMSPC"] == "00a067110000" and sgx["SGX Type"]["name"] == "Standard"
    assert sgx["TCB"]["PCESVN"] == 13 and sgx["TCB"]["SGX TCB Comp01 SVN"] == 11
    assert "PlatformInstanceID" not in sgx and "Configuration" not in sgx
    assert chain[2]["self_issued"] and "SGX Extensions" not in chain[2]


def test_tdx_quote_v4(capsys):
    tree = shown(capsys, TDX)
    assert_documented(tree)
    assert (tree["kind"], tree["technology"]) == ("tdx-quote", "tdx")
    assert (tree["size"], tree["trailing_bytes"]) == (4936, 70)  # PROVENANCE.md
    assert "body_descriptor" not in tree  # v4 has none
    assert tree["header"]["Version"] == 4
    assert tree["header"]["TEE Type"] == {"value": "0x81", "name": "TDX"}
    body = tree["body"]
    assert body["MRTD"] == ("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a"
                            "3520c942a604a407de03ae6dc5f87f27428b2538873118b7")
    assert body["TEE_TCB_SVN"]["components"][:3] == [6, 1, 3]
    attributes = body["TDATTRIBUTES"]
    assert attributes["raw"] == "0x0000000010000000"
    assert attributes["SEPT_VE_DISABLE"] and not attributes["DEBUG"]
    assert body["XFAM"]["raw"] == "0x00000000000602e7" and body["XFAM"]["XTILEDATA"]
    assert "TEE_TCB_SVN_2" not in body  # TD 1.0
    qe = tree["signature_data"]["QE Report Certification Data"]
    assert tree["signature_data"]["Certification Data Type"]["value"] == 6
    assert qe["QE Certification Data"]["FMSPC"] == "b0c06f000000"
    leaf = qe["QE Certification Data"]["PCK Certificate Chain"][0]
    assert leaf["issuer"].endswith("CN=Intel SGX PCK Platform CA")
    sgx = leaf["SGX Extensions"]
    assert sgx["SGX Type"] == {"value": 1, "name": "Scalable"}
    assert len(sgx["PlatformInstanceID"]) == 32 and "SMT Enabled" in sgx["Configuration"]


def test_snp_report_v2(capsys):
    raw = MILAN.read_bytes()
    tree = shown(capsys, MILAN)
    assert_documented(tree)
    assert (tree["kind"], tree["technology"], tree["size"]) == ("snp-report", "snp", 1184)
    assert tree["certificate_table"] is None
    report = tree["report"]
    assert report["VERSION"] == 2 and report["VMPL"] == 0
    assert report["POLICY"]["raw"] == "0x0000000000030000"  # PROVENANCE.md
    assert report["POLICY"]["SMT"] and report["POLICY"]["RESERVED_MBO"]
    assert not report["POLICY"]["DEBUG"] and not report["POLICY"]["MIGRATE_MA"]
    assert {k: report["REPORTED_TCB"][k] for k in ("BOOT_LOADER", "TEE", "SNP",
                                                   "MICROCODE")} == {
        "BOOT_LOADER": 3, "TEE": 0, "SNP": 8, "MICROCODE": 115}
    assert report["MEASUREMENT"] == raw[0x90:0xC0].hex()
    assert report["MEASUREMENT"].startswith("7a1e5c266c0108db")
    assert report["CHIP_ID"] == raw[0x1A0:0x1E0].hex()
    assert report["SIGNING_KEY"] == {"value": 0, "name": "VCEK"}
    assert report["PLATFORM_INFO"]["SMT_EN"] is True
    assert "CPUID_FAM_ID" not in report  # reserved in version 2
    assert tree["product"]["name"] == "Milan" and tree["product"]["from"].startswith("assumed")


def test_snp_debug_report(capsys):
    tree = shown(capsys, MILAN_DEBUG)
    report = tree["report"]
    assert report["POLICY"]["raw"] == "0x00000000000b0000" and report["POLICY"]["DEBUG"]
    assert bytes.fromhex(report["REPORT_DATA"]).startswith(bytes([1, 2, 3, 4, 5, 0]))
    assert [report["REPORTED_TCB"][k] for k in ("BOOT_LOADER", "TEE", "SNP", "MICROCODE")] \
        == [2, 0, 5, 68]


def test_snp_report_with_its_certificate_table(capsys, tmp_path):
    """The table's VCEK names the product, and each entry is named by its GUID."""
    vcek = (AMD / "milan_report_v2.vcek.der").read_bytes()
    ask, ark = x509.load_pem_x509_certificates((AMD / "ask_ark_milan.pem").read_bytes())
    der = serialization.Encoding.DER
    table = certs.pack_table([(certs.VCEK_GUID, vcek), (certs.ASK_GUID, ask.public_bytes(der)),
                              (certs.ARK_GUID, ark.public_bytes(der))])
    path = tmp_path / "with-table.bin"
    path.write_bytes(MILAN.read_bytes() + table)
    tree = shown(capsys, path)
    assert_documented(tree)
    assert tree["size"] == 1184 + len(table)
    assert tree["product"] == {"name": "Milan", "from": "the VCEK in the certificate table"}
    entries = tree["certificate_table"]
    assert [(e["guid"], e["name"]) for e in entries] == [
        ("63da758d-e664-4564-adc5-f4b93be8accd", "VCEK"),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", "ASK"),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", "ARK")]
    vcek_tree = entries[0]["certificate"]
    assert (vcek_tree["not_before"][:10], vcek_tree["not_after"][:10]) == ("2023-04-03",
                                                                           "2030-04-03")
    amd = vcek_tree["AMD Extensions"]
    assert amd["productName"].startswith("Milan") and amd["snpSPL"] == 8
    assert amd["ucodeSPL"] == 115 and len(amd["hwID"]) == 128
    assert entries[2]["certificate"]["subject"].startswith("CN=ARK-Milan")
    assert entries[2]["certificate"]["self_issued"]


def test_turin_vcek_certificate(capsys):
    tree = shown(capsys, AMD / "turin_vcek.der")
    assert_documented(tree)
    assert tree["kind"] == "certificate"
    amd = tree["certificate"]["AMD Extensions"]
    assert amd["productName"] == "Turin" and "fmcSPL" in amd  # PROVENANCE.md: FMC SPL
    assert len(bytes.fromhex(amd["hwID"])) == 8
    assert tree["certificate"]["public_key"]["curve"] == "secp384r1"


def test_a_pem_bundle_shows_each_certificate(capsys):
    tree = shown(capsys, AMD / "ask_ark_milan.pem")
    assert_documented(tree)
    assert tree["kind"] == "bundle" and tree["encoding"] == "pem"
    assert [i["certificate"]["subject"].split(",")[0] for i in tree["items"]] == [
        "CN=SEV-Milan", "CN=ARK-Milan"]
    assert {i["pem_label"] for i in tree["items"]} == {"CERTIFICATE"}


def test_a_pck_certificate_alone(capsys, tmp_path):
    chain = shown(capsys, SGX)["signature_data"]["QE Certification Data"]
    quote = SGX.read_bytes()  # its type-5 certification data: PEM, the PCK first
    start = quote.index(b"-----BEGIN CERTIFICATE-----")
    end = quote.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----")
    path = tmp_path / "pck.pem"
    path.write_bytes(quote[start:end] + b"\n")
    tree = shown(capsys, path)
    assert tree["kind"] == "certificate" and tree["pem_label"] == "CERTIFICATE"
    assert tree["certificate"] == chain["PCK Certificate Chain"][0]


def test_text_output_is_an_indented_tree(capsys):
    code, out, err = run(capsys, SGX)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "kind: sgx-quote"
    assert "  MRENCLAVE: 33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb" \
        in lines
    assert "    FLAGS: 0x0000000000000005 (INIT, MODE64BIT)" in lines
    assert "  Attestation Key Type: 2 (ECDSA-256-with-P-256 curve)" in lines
    assert any(line.strip() == "FMSPC: 00a067110000" for line in lines)
    code, out, _ = run(capsys, MILAN)
    assert "    DEBUG: no" in out.splitlines() and "  PLATFORM_INFO: 0x0000000000000001 " \
        "(SMT_EN)" in out.splitlines()


def test_standard_input_as_a_process():
    """`show -` reads standard input; the real command line, with JSON on stdout."""
    result = process("-", "--json", stdin=TDX.read_bytes().hex().encode())
    assert result.returncode == 0, result.stderr
    tree = json.loads(result.stdout)
    assert tree["encoding"] == "hex" and tree["body"]["MRTD"].startswith("91eb2b44")
