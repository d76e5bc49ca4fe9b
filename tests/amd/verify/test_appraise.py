from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import _check_link, _info, appraise_snp, kds_vcek_path
from attestcall.errors import CollateralError, CollateralMissing, EvidenceError
from tests.amd.conftest import ask_ark, read
from tests.fakes import snp_forge as forge

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
REPORTS = [("milan_report_v2.bin", "milan_report_v2.vcek.der"),
           ("milan_report_v2_debug.bin", "milan_report_v2_debug.vcek.der")]
CLAIMS = {
    "version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "signature_algo",
    "current_tcb", "reported_tcb", "committed_tcb", "launch_tcb", "platform_info",
    "signer_info", "report_data", "measurement", "host_data", "id_key_digest",
    "author_key_digest", "report_id", "report_id_ma", "chip_id", "product", "migration_agent",
    "smt_enabled",
}


def der(cert) -> bytes:
    return cert.public_bytes(Encoding.DER)


def milan_table(vcek: bytes) -> bytes:
    ask, ark = ask_ark("milan")
    return amdcerts.pack_table([(amdcerts.VCEK_GUID, vcek), (amdcerts.ASK_GUID, der(ask)),
                                (amdcerts.ARK_GUID, der(ark))])


def certs_forms(vcek: bytes) -> dict[str, bytes]:
    cert = amdcerts.load_certificate(vcek)
    return {
        "der": vcek,
        "pem": cert.public_bytes(Encoding.PEM),
        "pem chain": cert.public_bytes(Encoding.PEM) + read("ask_ark_milan.pem"),
        "table": milan_table(vcek),
    }


# ---------------------------------------------------------------------------- real vectors


@pytest.mark.parametrize("report_name, vcek_name", REPORTS)
@pytest.mark.parametrize("form", ["der", "pem", "pem chain", "table"])
def test_real_reports_verify_with_certs(report_name, vcek_name, form):
    appraisal = appraise_snp(read(report_name), certs=certs_forms(read(vcek_name))[form],
                             at=AT, arks=amd_arks())
    assert appraisal.problems == []
    assert appraisal.technology == "snp"
    assert appraisal.claims["product"] == "Milan"
    assert not appraisal.simulated


@pytest.mark.parametrize("report_name, vcek_name", REPORTS)
def test_real_reports_with_table_in_evidence(report_name, vcek_name):
    evidence = read(report_name) + milan_table(read(vcek_name))
    appraisal = appraise_snp(evidence, at=AT, arks=amd_arks())
    assert appraisal.problems == []


def test_table_with_vcek_only_uses_pinned_ask(milan_report, milan_vcek):
    evidence = milan_report + amdcerts.pack_table([(amdcerts.VCEK_GUID, milan_vcek)])
    assert appraise_snp(evidence, at=AT, arks=amd_arks()).problems == []


def test_vcek_tcb_equals_reported_tcb():
    for report_name, vcek_name in REPORTS:
        report = snp.parse(read(report_name))
        ext = amdcerts.vek_extensions(amdcerts.load_certificate(read(vcek_name)))
        tcb = report.tcb("reported_tcb", ext.product)
        assert (ext.bootloader, ext.tee, ext.snp, ext.microcode) == (
            tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode)


def test_claims(milan_report, milan_vcek):
    appraisal = appraise_snp(milan_report, certs=milan_vcek, at=AT, arks=amd_arks())
    claims = appraisal.claims
    assert set(claims) == CLAIMS
    assert claims["version"] == 2 and claims["policy"] == 0x30000 and claims["vmpl"] == 0
    assert claims["reported_tcb"] == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115,
                                      "raw": "0300000000000873"}
    assert claims["signer_info"] == {"author_key_en": False, "mask_chip_key": False,
                                     "signing_key": 0}
    assert claims["measurement"] == milan_report[0x90:0xC0].hex()
    assert claims["chip_id"] == milan_report[0x1A0:0x1E0].hex()
    assert claims["report_id_ma"] == "ff" * 32
    assert claims["migration_agent"] is False and claims["smt_enabled"] is True
    assert appraisal.report_data == milan_report[0x50:0x90]
    assert appraisal.debug is False


def test_debug_report_is_flagged():
    appraisal = appraise_snp(read("milan_report_v2_debug.bin"),
                             certs=read("milan_report_v2_debug.vcek.der"), at=AT,
                             arks=amd_arks())
    assert appraisal.problems == []
    assert appraisal.debug is True
    assert appraisal.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)


def test_missing_vcek_says_how_to_get_it(milan_report):
    with pytest.raises(CollateralMissing) as missing:  # unusable input (exit 2), as for Intel
        appraise_snp(milan_report, at=AT, arks=amd_arks())
    problem = str(missing.value)
    assert "VCEK" in problem and "--certs" in problem and "--kds" in problem


def test_wrong_vcek(milan_report):
    appraisal = appraise_snp(milan_report, certs=read("milan_report_v2_debug.vcek.der"),
                             at=AT, arks=amd_arks())
    text = "\n".join(appraisal.problems)
    assert "signature does not verify" in text
    assert "REPORTED_TCB" in text
    assert "another chip" in text


def test_preferred_vcek_is_the_one_that_verifies(milan_report, milan_vcek):
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, milan_vcek)])
    appraisal = appraise_snp(milan_report + table, certs=read("milan_report_v2_debug.vcek.der"),
                             at=AT, arks=amd_arks())
    assert appraisal.problems == []


@pytest.mark.parametrize("at", [dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
                                dt.datetime(2030, 4, 4, tzinfo=dt.UTC)])
def test_vcek_validity(milan_report, milan_vcek, at):
    problems = appraise_snp(milan_report, certs=milan_vcek, at=at, arks=amd_arks()).problems
    assert len(problems) == 1 and "not valid at" in problems[0] and "VCEK" in problems[0]


def test_naive_time_is_utc(milan_report, milan_vcek):
    naive = dt.datetime(2025, 6, 1)
    assert appraise_snp(milan_report, certs=milan_vcek, at=naive, arks=amd_arks()).problems == []


def test_unpinned_real_ark(milan_report, milan_vcek):
    _, genoa_ark = ask_ark("genoa")
    problems = appraise_snp(milan_report, certs=milan_table(milan_vcek), at=AT,
                            arks=[genoa_ark]).problems
    assert len(problems) == 1 and "not pinned" in problems[0] and "ARK-Milan" in problems[0]


def test_no_arks_at_all(milan_report, milan_vcek):
    problems = appraise_snp(milan_report, certs=milan_vcek, at=AT, arks=[]).problems
    assert len(problems) == 1 and "ARK" in problems[0]


def test_turin_vcek_chains_to_turin_ask_ark():
    vcek = _info(amdcerts.load_certificate(read("turin_vcek.der")))
    ask, ark = (_info(c) for c in ask_ark("turin"))
    assert _check_link(vcek, ask) is None
    assert _check_link(ask, ark) is None
    assert _check_link(ark, ark) is None
    milan_ask, _ = ask_ark("milan")
    assert _check_link(vcek, _info(milan_ask)) is not None


def test_milan_chain_links():
    for vcek_name in ("milan_report_v2.vcek.der", "milan_report_v2_debug.vcek.der"):
        vcek = _info(amdcerts.load_certificate(read(vcek_name)))
        ask, ark = (_info(c) for c in ask_ark("milan"))
        assert _check_link(vcek, ask) is None and _check_link(ask, ark) is None


def test_malformed_certs_input(milan_report):
    with pytest.raises(CollateralError):
        appraise_snp(milan_report, certs=b"garbage", at=AT, arks=amd_arks())


@pytest.mark.parametrize("tail", [b"\x01", bytes(23), b"\xff" * 24])
def test_malformed_table_in_evidence(milan_report, tail):
    with pytest.raises(EvidenceError):
        appraise_snp(milan_report + tail, at=AT, arks=amd_arks())


def test_short_evidence():
    with pytest.raises(EvidenceError, match="1184"):
        appraise_snp(b"\x02\x00\x00\x00", at=AT, arks=amd_arks())


def test_cache_gives_the_same_answer(milan_report, milan_vcek):
    first = appraise_snp(milan_report, certs=milan_vcek, at=AT, arks=amd_arks())
    again = appraise_snp(milan_report, certs=milan_vcek, at=AT, arks=amd_arks())
    late = appraise_snp(milan_report, certs=milan_vcek,
                        at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC), arks=amd_arks())
    assert first == again and first.problems == []
    assert late.problems and "not valid" in late.problems[0]


# ---------------------------------------------------------------------------- KDS path


def test_kds_path_milan(milan_report):
    report = snp.parse(milan_report)
    assert kds_vcek_path(report, "Milan") == (
        f"/vcek/v1/Milan/{report.chip_id.hex()}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115")
    assert kds_vcek_path(milan_report, "Milan") == kds_vcek_path(report, "Milan")


def test_kds_path_needs_a_product_for_v2(milan_report):
    with pytest.raises(EvidenceError, match="product"):
        kds_vcek_path(milan_report)


def test_kds_path_from_cpuid(base_report):
    v3 = dataclasses.replace(base_report, version=3, cpuid_fam_id=0x19, cpuid_mod_id=0x11)
    assert kds_vcek_path(v3).startswith("/vcek/v1/Genoa/")


def test_kds_path_turin(base_report):
    tcb = forge.Tcb(bootloader=1, tee=2, snp=4, microcode=82, fmc=3).raw(snp.TURIN)
    turin = dataclasses.replace(base_report, version=5, cpuid_fam_id=0x1A, cpuid_mod_id=0x02,
                                reported_tcb=tcb, chip_id=bytes.fromhex("6bb1229b7692b710")
                                + bytes(56))
    assert kds_vcek_path(turin) == ("/vcek/v1/Turin/6bb1229b7692b710?blSPL=01&teeSPL=02"
                                    "&snpSPL=04&ucodeSPL=82&fmcSPL=03")
    v2 = dataclasses.replace(turin, version=2, cpuid_fam_id=0, cpuid_mod_id=0)
    assert kds_vcek_path(v2) == kds_vcek_path(turin)


def test_kds_path_masked_chip_id(base_report):
    masked = dataclasses.replace(base_report, signer_info=0b10, chip_id=bytes(64))
    with pytest.raises(EvidenceError, match="masked"):
        kds_vcek_path(masked, "Milan")


# ---------------------------------------------------------------------------- forged chains


def test_forged_chain_trusted(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report)
    appraisal = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark])
    assert appraisal.problems == []


def test_forged_chain_not_pinned(base_report):
    chain = forge.chain()  # its ARK is named ARK-Milan, like the real one
    evidence = forge.report_for(chain, base_report)
    appraisal = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=amd_arks())
    assert len(appraisal.problems) == 1
    assert "not pinned" in appraisal.problems[0]
    assert not appraisal.simulated


def test_simulated_chain(base_report):
    chain = forge.chain(root_label="ARK-{product} SIMULATED")
    evidence = forge.report_for(chain, base_report)
    refused = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=amd_arks())
    assert refused.simulated
    assert len(refused.problems) == 1
    assert "simulated" in refused.problems[0] and "--trust-simulated" in refused.problems[0]
    trusted = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[*amd_arks(), chain.ark])
    assert trusted.problems == [] and trusted.simulated


def test_simulated_chain_in_table(base_report):
    chain = forge.chain(root_label="ARK-{product} SIMULATED")
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, chain.der("vek")),
                                 (amdcerts.ASK_GUID, chain.der("ask")),
                                 (amdcerts.ARK_GUID, chain.der("ark"))])
    evidence = forge.report_for(chain, base_report) + table
    appraisal = appraise_snp(evidence, at=AT, arks=[chain.ark])
    assert appraisal.problems == [] and appraisal.simulated


def test_missing_ask(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report)
    problems = appraise_snp(evidence, certs=der(chain.vek), at=AT, arks=[chain.ark]).problems
    assert len(problems) == 1 and "no ASK" in problems[0] and "--certs" in problems[0]


def test_vcek_for_another_tcb(base_report):
    good = forge.chain()
    evidence = forge.report_for(good, base_report)
    other = forge.chain(tcb=forge.Tcb(bootloader=4))  # same key, another TCB
    problems = appraise_snp(evidence, certs=other.pem(), at=AT, arks=[other.ark]).problems
    assert len(problems) == 1 and "REPORTED_TCB" in problems[0]


def test_vcek_for_another_chip(base_report):
    good = forge.chain()
    evidence = forge.report_for(good, base_report)
    other = forge.chain(hwid=b"\x42" * 64)  # same key, another chip
    problems = appraise_snp(evidence, certs=other.pem(), at=AT, arks=[other.ark]).problems
    assert len(problems) == 1 and "another chip" in problems[0]


def test_masked_chip_id_skips_the_hwid_check(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, signer_info=0b10, chip_id=bytes(64))
    appraisal = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark])
    assert appraisal.problems == []
    assert appraisal.claims["signer_info"]["mask_chip_key"] is True


def test_turin_report(base_report):
    chain = forge.chain(snp.TURIN, tcb=forge.Tcb(bootloader=1, tee=2, snp=4, microcode=82,
                                                  fmc=3))
    evidence = forge.report_for(chain, base_report, version=5, cpuid_fam_id=0x1A,
                                cpuid_mod_id=0x02, launch_mit_vector=1, current_mit_vector=3)
    appraisal = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark])
    assert appraisal.problems == []
    assert appraisal.claims["product"] == "Turin"
    assert appraisal.claims["reported_tcb"] == {"fmc": 3, "bootloader": 1, "tee": 2, "snp": 4,
                                                "microcode": 82, "raw": "0301020400000052"}
    assert kds_vcek_path(evidence).endswith("&fmcSPL=03")


def test_turin_report_read_with_milan_layout_fails(base_report):
    chain = forge.chain(snp.TURIN, tcb=forge.Tcb(bootloader=1, tee=2, snp=4, microcode=82,
                                                  fmc=3))
    # The report claims Genoa in its CPUID fields: the products disagree.
    evidence = forge.report_for(chain, base_report, version=3, cpuid_fam_id=0x19,
                                cpuid_mod_id=0x11)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert any("CPUID says Genoa" in p for p in problems)


def test_turin_fmc_mismatch(base_report):
    chain = forge.chain(snp.TURIN, tcb=forge.Tcb(bootloader=1, tee=2, snp=4, microcode=82,
                                                  fmc=3))
    tcb = forge.Tcb(bootloader=1, tee=2, snp=4, microcode=82, fmc=2).raw(snp.TURIN)
    evidence = forge.report_for(chain, base_report, reported_tcb=tcb)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert len(problems) == 1 and "fmc 2" in problems[0] and "fmc 3" in problems[0]


def test_product_mismatch_between_vcek_and_chain(base_report):
    chain = forge.chain(snp.GENOA, root_label="ARK-Milan")
    evidence = forge.report_for(chain, base_report)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert problems == ["the VCEK is for Genoa but its chain is Milan's"]


def test_vlek(base_report):
    chain = forge.chain(kind="VLEK")
    evidence = forge.report_for(chain, base_report)
    assert snp.parse(evidence).signing_key == snp.SIGNING_KEY_VLEK
    appraisal = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark])
    assert appraisal.problems == []
    table = amdcerts.pack_table([(amdcerts.VLEK_GUID, chain.der("vek")),
                                 (amdcerts.ASK_GUID, chain.der("ask"))])
    assert appraise_snp(evidence + table, at=AT, arks=[chain.ark]).problems == []


def test_vlek_missing(base_report):
    chain = forge.chain(kind="VLEK")
    evidence = forge.report_for(chain, base_report)
    with pytest.raises(CollateralMissing, match="no VLEK.*--certs"):
        appraise_snp(evidence, at=AT, arks=[chain.ark])


def test_vcek_is_not_used_for_a_vlek_report(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, signer_info=snp.SIGNING_KEY_VLEK << 2)
    with pytest.raises(CollateralMissing, match="no VLEK"):
        appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark])


def test_unsigned_report(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, signer_info=snp.SIGNING_KEY_NONE << 2)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert problems == ["the report is not signed (SIGNING_KEY is none)"]


@pytest.mark.parametrize("version", [0, 1, 6])
def test_unsupported_versions(base_report, version):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, version=version)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert problems == [f"report version {version} is not supported (2 to 5)"]


def test_unknown_signature_algorithm(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, signature_algo=2)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert len(problems) == 1 and "signature algorithm 2" in problems[0]


def test_expired_synthetic_vcek(base_report):
    chain = forge.chain(not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    evidence = forge.report_for(chain, base_report)
    problems = appraise_snp(evidence, certs=chain.pem(), at=AT, arks=[chain.ark]).problems
    assert len(problems) == 1 and "not valid at" in problems[0]


def test_ask_in_the_vcek_slot(milan_report):
    ask, _ = ask_ark("milan")
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, der(ask))])
    problems = appraise_snp(milan_report + table, at=AT, arks=amd_arks()).problems
    assert "the report's signature does not verify with the VCEK" in problems
    assert any("not an ECDSA key" in p for p in problems)


def test_unusable_certificate_in_evidence_table(milan_report, milan_vcek):
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, milan_vcek[:-1])])
    with pytest.raises(amdcerts.CertTableError, match="VCEK"):
        appraise_snp(milan_report + table, at=AT, arks=amd_arks())


def test_unusable_certificate_in_certs_table(milan_report, milan_vcek):
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, milan_vcek[:-1])])
    with pytest.raises(CollateralError):
        appraise_snp(milan_report, certs=table, at=AT, arks=amd_arks())


def test_concurrent_appraisals_share_the_caches(milan_report, milan_vcek):
    import threading

    from attestcall.amd.verify.appraise import clear_caches

    forms = list(certs_forms(milan_vcek).values())
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for round_ in range(12):
                if (seed + round_) % 5 == 0:
                    clear_caches()
                certs = forms[(seed + round_) % len(forms)]
                results.append(appraise_snp(milan_report, certs=certs, at=AT,
                                            arks=amd_arks()).problems)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [[]] * 48
