"""The SEV-SNP plugin record (technology 3): the 1184-byte ATTESTATION_REPORT, then the
GHCB certificate table.

Registered in pyproject.toml under the ``attestcall.tees`` entry points; hooks import what
they need when called."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from attestcall.amd.formats.report import REPORT_SIZE
from attestcall.amd.validate import SNP_POLICY
from attestcall.tees import (
    Backend,
    Option,
    SimState,
    Tee,
    TsmProvider,
    lazy,
)

if TYPE_CHECKING:
    import datetime as dt



def recognise(evidence: bytes) -> bool:
    if len(evidence) < REPORT_SIZE:
        return False
    (version,) = struct.unpack_from("<I", evidence, 0)
    (algo,) = struct.unpack_from("<I", evidence, 0x34)
    return 2 <= version <= 5 and algo == 1


def collateral_source(evidence: bytes, value: Any, url: str | None, crl: Any = None) -> Any:
    """Where appraisal gets the VCEK/VLEK and its chain: the user's certificates (bytes, a
    file: DER, PEM or a certificate table), a KDS at ``url``, and always the table after
    the report; ``crl`` the ARK's CRL (``--crl``)
    (:func:`attestcall.amd.fetch.source.certs_source`). A report whose table has its key
    asks the KDS only for the ARK's CRL."""
    from attestcall.amd.fetch.source import certs_source

    if value is None and url is not None and crl is None and not needs_collateral(evidence):
        from attestcall.amd.fetch.kds import KdsRevocation

        return KdsRevocation(url)
    return certs_source(value, url, crl)


KDS_SERVICE = ("ATTESTCALL_KDS_URL", "https://kdsintf.amd.com",
               "AMD certificates (VCEK, ASK, ARK) and the ARK's CRL")


def needs_collateral(evidence: bytes) -> bool:
    """Whether the report needs certificates from KDS: its certificate table (if any) has
    no key of the kind that signed it."""
    from attestcall.amd.fetch.source import TableSource
    from attestcall.amd.formats import report as snp
    from attestcall.errors import AttestcallError

    try:
        table = TableSource.from_evidence(evidence)
        signing_key = snp.parse(evidence[:REPORT_SIZE]).signing_key
    except AttestcallError:
        return False  # the appraisal says what is wrong with it
    if signing_key == snp.SIGNING_KEY_VLEK:
        return not table.vleks()
    return not table.vceks(None)  # type: ignore[arg-type]


def collateral_document(evidence: bytes, url: str | None) -> bytes:
    """VCEK/VLEK + ASK/ASVK + ARK (+ the ARK's CRL) as PEM, as ``--certs`` reads it."""
    from attestcall.amd.fetch.kds import collateral_bundle

    return collateral_bundle(evidence, url)


def appraise(evidence: bytes, collateral: Any, at: dt.datetime, roots: list[Any]) -> Any:
    from attestcall.amd.roots import amd_arks
    from attestcall.amd.verify.appraise import appraise_snp

    crls = simulated_crls() if roots else []
    return appraise_snp(evidence, certs=collateral, at=at, arks=[*amd_arks(), *roots],
                        crls=crls)


def simulated_crls() -> list[Any]:
    """The CRLs of this machine's simulated ARKs (``crl_<product>.pem`` beside each
    ``ark_<product>.pem``; a home made before the simulator published CRLs gets them
    now)."""
    from attestcall.amd.sim.snp import state

    return state.published_crls()


def simulated_roots() -> list[Any]:
    """The simulated ARKs of this machine, if they exist (never created here)."""
    from attestcall.simstate import read_certificates

    return read_certificates("snp", "ark*.pem")


def report_data(evidence: bytes) -> bytes:
    from attestcall.amd.formats import report
    return report.parse(evidence[:REPORT_SIZE]).report_data


def enarx_value(evidence: bytes) -> bytes | None:
    """Enarx's value: DER ``SEQUENCE { vcek Certificate, report OCTET STRING }`` with the
    VCEK or VLEK of the certificate table; None without one."""
    from attestcall import der
    from attestcall.amd.formats import certs
    from attestcall.errors import AttestcallError

    try:
        entries = certs.parse_table(evidence[REPORT_SIZE:])
    except AttestcallError:
        return None
    veks = [e.data for e in entries if e.guid in (certs.VCEK_GUID, certs.VLEK_GUID)]
    if not veks:
        return None
    return der.encode_sequence(veks[0], der.encode_octet_string(evidence[:REPORT_SIZE]))


def enarx_matches(value: bytes, evidence: bytes) -> bool:
    """Enarx's value carries this evidence's report (the certificate may differ)."""
    from attestcall import der

    try:
        items = der.decode(value).children()
        report = items[1].as_octet_string() if len(items) == 2 else None
    except der.DerError:
        return False
    return report == evidence[:REPORT_SIZE]


TEE = Tee(
    technology=3,
    name="snp",
    title="SEV-SNP report",
    media_type="application/vnd.attestcall.evidence.snp-report",
    recognise=recognise,
    appraise=appraise,
    collateral_source=collateral_source,
    collateral_options=("--certs", "--kds"),
    collateral_help="SNP certificates: DER or PEM VCEK/VLEK (+ ASK/ASVK, ARK, the ARK's "
    "CRL), or a certificate table",
    revocation_option="--crl",
    collateral_service=KDS_SERVICE,
    needs_collateral=needs_collateral,
    collateral_document=collateral_document,
    simulated_roots=simulated_roots,
    policy=SNP_POLICY,
    debug_word="guest",
    report_data=report_data,
    measurement_claim="measurement",
    default_key_type="p384",  # the VCEK's curve
    enarx_oid="1.3.6.1.4.1.58270.1.3",
    enarx_value=enarx_value,
    enarx_matches=enarx_matches,
    tsm=TsmProvider("sev_guest", auxblob=True, privlevel=True, outblob_size=REPORT_SIZE),
    backends=(
        Backend("snp-sim", lazy("attestcall.amd.sim.snp.keep:open_snp_sim"), simulated=True),
        Backend("sev-guest", lazy("attestcall.amd.client.sev_guest:open_sev_guest"),
                simulated=False, probe=lazy("attestcall.amd.client.sev_guest:probe"), order=20),
    ),
    keep_options=(
        Option(("--snp-product",), "product", "choice", "the simulated processor "
               "(default milan)", ("milan", "genoa", "turin")),
        Option(("--snp-vlek",), "vlek", "flag",
               "sign reports with a VLEK (ASVK chain) instead of the VCEK"),
        Option(("--snp-report-version",), "report_version", "choice",
               "ATTESTATION_REPORT version (default 3)", (3, 5)),
        Option(("--host-data",), "host_data", "hex:32", "HOST_DATA, 64 hex digits"),
        Option(("--family-id",), "family_id", "hex:16", "FAMILY_ID, 32 hex digits"),
        Option(("--image-id",), "image_id", "hex:16", "IMAGE_ID, 32 hex digits"),
    ),
    describe=lazy("attestcall.amd.formats.describe:describe_snp"),
    sim_state=SimState("snp", lazy("attestcall.amd.sim.snp.state:create_state"),
                       lazy("attestcall.amd.sim.snp.state:describe_state")),
)
