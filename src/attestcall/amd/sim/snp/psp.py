"""The simulated AMD secure processor (PSP): SNP_GUEST_REQUEST for attestation reports.

The PSP shares VMPCK0 with the guest (it wrote it into the guest's secrets page at launch)
and keeps its own message sequence number for it. A request must carry exactly the next
sequence number: a replayed (older) or out-of-order (later) request is refused and does
not advance the count. A request that fails authentication is refused too. The response,
MSG_REPORT_RSP, is encrypted under the same key with the request's sequence number plus one.

The report is filled as the firmware fills it: VERSION (3, or 5), the guest's policy,
FAMILY_ID/IMAGE_ID, the VMPL asked for, SIGNATURE_ALGO 1, CURRENT/REPORTED/COMMITTED/
LAUNCH TCB, PLATFORM_INFO (SMT enabled), signer info (VCEK or VLEK), the nonce as
REPORT_DATA, MEASUREMENT, HOST_DATA, REPORT_ID, REPORT_ID_MA (all ones: no migration
agent), CPUID family/model/stepping, CHIP_ID, the firmware build, and (version 5) the
mitigation vectors; then an ECDSA P-384 SHA-384 signature over bytes 0x000-0x29F, R and S
little-endian in 72-byte fields.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestcall.amd.formats import guest_message as gm
from attestcall.amd.formats import report as snp
from attestcall.amd.sim.snp.launch import GuestLaunch
from attestcall.amd.sim.snp.products import Product, Tcb

SUPPORTED_VERSIONS = (3, 5)
PLATFORM_INFO_SMT_EN = 1 << 0


class GuestRequestRefused(Exception):
    """The PSP refused a guest message (the hypervisor sees the firmware error)."""


@dataclass(frozen=True)
class Chip:
    """The simulated chip: its product line, id and TCBs."""

    product: Product
    chip_id: bytes  # product.hwid_size bytes
    current_tcb: Tcb
    reported_tcb: Tcb  # what the host set with SNP_SET_CONFIG; the VCEK is this TCB's
    committed_tcb: Tcb
    smt_enabled: bool = True

    def chip_id_field(self) -> bytes:
        return self.chip_id.ljust(64, b"\0")


@dataclass(frozen=True)
class Signer:
    """The key the PSP signs reports with: ``kind`` is snp.SIGNING_KEY_VCEK or _VLEK."""

    kind: int
    key: ec.EllipticCurvePrivateKey


class SimulatedPsp:
    """One guest's view of the simulated PSP."""

    def __init__(self, chip: Chip, launch: GuestLaunch, vmpck0: bytes, signer: Signer, *,
                 report_version: int = 3, launch_tcb: Tcb | None = None):
        if report_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"report version {report_version} is not one of "
                             f"{SUPPORTED_VERSIONS}")
        if len(vmpck0) != gm.KEY_SIZE:
            raise ValueError("VMPCK0 is 32 bytes")
        self.chip = chip
        self.launch = launch
        self.signer = signer
        self.report_version = report_version
        self.launch_tcb = launch_tcb or chip.current_tcb
        self._vmpck0 = bytes(vmpck0)
        self._seqno = 0  # the last sequence number used with VMPCK0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the message layer

    def guest_request(self, message: bytes) -> bytes:
        """Answer one encrypted guest message with an encrypted response."""
        with self._lock:
            try:
                header = gm.parse_header(message)
            except gm.GuestMessageError as exc:
                raise GuestRequestRefused(f"malformed guest message: {exc}") from exc
            if header.vmpck != 0:
                raise GuestRequestRefused(f"VMPCK{header.vmpck} is not installed")
            expected = self._seqno + 1
            if header.seqno != expected:
                kind = "replayed" if header.seqno < expected else "out-of-order"
                raise GuestRequestRefused(f"{kind} request: sequence number {header.seqno}, "
                                          f"expected {expected}")
            if expected + 1 > gm.MAX_SEQNO:
                raise GuestRequestRefused("the sequence number is exhausted")
            try:
                payload = gm.open_payload(self._vmpck0, message, header)
            except gm.GuestMessageError as exc:
                raise GuestRequestRefused(str(exc)) from exc
            if header.msg_type != gm.MSG_REPORT_REQ or header.msg_version != gm.MSG_VERSION:
                raise GuestRequestRefused(f"unsupported message type {header.msg_type} "
                                          f"version {header.msg_version}")
            response = self._report_response(payload)
            self._seqno = expected + 1
            return gm.seal(self._vmpck0, expected + 1, gm.MSG_REPORT_RSP, response)

    def _report_response(self, payload: bytes) -> bytes:
        try:
            request = gm.ReportRequest.unpack(payload)
        except gm.GuestMessageError:
            return gm.pack_report_response(gm.STATUS_INVALID_PARAM)
        if request.vmpl > 3:
            return gm.pack_report_response(gm.STATUS_INVALID_PARAM)
        wanted = {gm.KEY_SEL_VCEK: snp.SIGNING_KEY_VCEK, gm.KEY_SEL_VLEK: snp.SIGNING_KEY_VLEK}
        if request.key_sel in wanted and wanted[request.key_sel] != self.signer.kind:
            return gm.pack_report_response(gm.STATUS_INVALID_KEY)
        return gm.pack_report_response(gm.STATUS_SUCCESS,
                                       self.report(request.report_data, request.vmpl))

    # ------------------------------------------------------------------ the report

    def report(self, report_data: bytes, vmpl: int = 0) -> bytes:
        """A signed ATTESTATION_REPORT (1184 bytes) binding ``report_data``."""
        chip, launch, product = self.chip, self.launch, self.chip.product
        name = product.name
        family, model, stepping = product.cpuid
        major, minor, build = product.firmware
        fields = snp.Report(
            version=self.report_version, guest_svn=launch.guest_svn,
            policy=launch.policy.encode(), family_id=launch.family_id,
            image_id=launch.image_id, vmpl=vmpl, signature_algo=snp.SIG_ECDSA_P384_SHA384,
            current_tcb=chip.current_tcb.encode(name),
            platform_info=PLATFORM_INFO_SMT_EN if chip.smt_enabled else 0,
            signer_info=self.signer.kind << 2, report_data=bytes(report_data),
            measurement=launch.measurement, host_data=launch.host_data,
            id_key_digest=launch.id_key_digest, author_key_digest=launch.author_key_digest,
            report_id=launch.report_id, report_id_ma=launch.report_id_ma,
            reported_tcb=chip.reported_tcb.encode(name), cpuid_fam_id=family,
            cpuid_mod_id=model, cpuid_step=stepping, chip_id=chip.chip_id_field(),
            committed_tcb=chip.committed_tcb.encode(name), current_build=build,
            current_minor=minor, current_major=major, committed_build=build,
            committed_minor=minor, committed_major=major,
            launch_tcb=self.launch_tcb.encode(name), launch_mit_vector=0,
            current_mit_vector=0, signature=bytes(snp.SIGNATURE_SIZE),
        )
        signed = fields.pack()[:snp.SIGNED_SIZE]
        r, s = decode_dss_signature(self.signer.key.sign(signed, ec.ECDSA(hashes.SHA384())))
        size = snp.ECDSA_COMPONENT_SIZE
        signature = r.to_bytes(size, "little") + s.to_bytes(size, "little")
        return signed + signature.ljust(snp.SIGNATURE_SIZE, b"\0")
