"""SEV-SNP in the keep: the trusted shim's guest-request flow and the host's relay to the
(simulated) AMD secure processor.

The shim holds the guest's secrets page: VMPCK0 and the message sequence number. For each
report it builds MSG_REPORT_REQ (REPORT_DATA = the nonce, the VMPL), encrypts it under
VMPCK0 as an SNP guest message (AES-256-GCM, the sequence number as IV, the header as AAD)
and hands the ciphertext to the untrusted host (``Op.SNP_GUEST_REQUEST``), which relays it
to the PSP and returns the PSP's encrypted MSG_REPORT_RSP. The shim checks the response's
header, sequence number (the request's plus one), tag, message type and size and status;
it does not parse the report. The host also supplies the certificate table
(``Op.SNP_CERTS``), which is not secret and is only bounded in size here: the verifier
checks it. Evidence = the 1184-byte report + the table.

As the Linux sev-guest driver does, any failed guest request (the host dropped, tampered
with, replayed, reordered or truncated a message, or the PSP refused it) disables VMPCK0:
the key is wiped and every later call fails (-EIO). The guest and the PSP can no longer be
sure they agree on the sequence number, and reusing a sequence number would reuse an
AES-GCM IV under the same key.

In this simulation the PSP runs inside the host process, so the "hardware" boundary
between host and PSP is modelled, not enforced: hostile-host tests tamper with the bytes
the host relays, as a real hypervisor could.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from attestcall.abi import HostFailure, PlatformFailure, Technology
from attestcall.amd.formats import guest_message as gm
from attestcall.amd.formats import report as snp
from attestcall.amd.sim import snp as snp_sim
from attestcall.amd.sim.snp.psp import SUPPORTED_VERSIONS
from attestcall.errors import HostError, UsageError
from attestcall.tees import Channel, KeepServices, OpenedKeep, refuse_unknown_options

REPORT_SIZE = snp.REPORT_SIZE
RESPONSE_SIZE = gm.HEADER_SIZE + gm.REPORT_RSP_SIZE
CERTS_LIMIT = 0x4000  # SEV_FW_BLOB_MAX_SIZE: the most certificate data the driver accepts
SEQNO_LIMIT = 2**32 - 1  # the secrets page's OS area keeps the count as a u32


class Op(IntEnum):
    """The request-block ops of the SEV-SNP keep."""

    SNP_GUEST_REQUEST = 16  # encrypted SNP guest message -> encrypted response
    SNP_CERTS = 17  # -> the certificate table the host appends (VCEK/VLEK, ASK/ASVK, ARK)

class VmpckDisabled(PlatformFailure):
    """VMPCK0 was wiped after a failed guest request: no more reports from this keep."""


class GuestRequestFailed(PlatformFailure):
    """A guest request failed (the shim then disables VMPCK0)."""


class SecretsPage:
    """The part of the SNP secrets page the shim uses: VMPCK0 and msg_seqno_0 (the last
    sequence number used; the next request carries it plus one)."""

    def __init__(self, vmpck0: bytes):
        if len(vmpck0) != gm.KEY_SIZE:
            raise ValueError("VMPCK0 is 32 bytes")
        self.vmpck0 = bytearray(vmpck0)
        self.msg_seqno = 0

    @property
    def disabled(self) -> bool:
        return not any(self.vmpck0)

    def disable(self) -> None:
        """Wipe VMPCK0 (as the Linux driver does with snp_disable_vmpck)."""
        self.vmpck0[:] = bytes(len(self.vmpck0))


class SnpShim:
    """SNP: a report through an encrypted guest request, then the host's certificate table.

    Requests are serialised by a lock held across the whole exchange (sequence number
    choice, relay, response check, count update), so any interleaving of callers gives the
    PSP strictly consecutive sequence numbers. Once VMPCK0 is disabled every call, size
    queries included, raises :class:`VmpckDisabled` (-EIO to the payload)."""

    technology = Technology.SNP

    def __init__(self, secrets: SecretsPage, channel: Channel, vmpl: int = 0):
        if not 0 <= vmpl <= 3:
            raise ValueError("VMPL is 0..3")
        self.secrets = secrets
        self.channel = channel
        self.vmpl = vmpl
        self._lock = threading.Lock()

    def evidence_size(self) -> int:
        with self._lock:
            self._check_enabled()
            return REPORT_SIZE + len(self._certificate_table())

    def evidence(self, nonce: bytes) -> bytes:
        with self._lock:
            self._check_enabled()
            table = self._certificate_table()
            return self._report(nonce) + table

    def _check_enabled(self) -> None:
        if self.secrets.disabled:
            raise VmpckDisabled("VMPCK0 is disabled after a failed guest request")

    def _certificate_table(self) -> bytes:
        return self.channel.call(Op.SNP_CERTS, b"", CERTS_LIMIT)

    def _report(self, nonce: bytes) -> bytes:
        secrets = self.secrets
        seqno = secrets.msg_seqno + 1
        try:
            if seqno + 1 > SEQNO_LIMIT:
                raise GuestRequestFailed("the message sequence number is exhausted")
            request = gm.ReportRequest(bytes(nonce), self.vmpl, gm.KEY_SEL_EITHER).pack()
            message = gm.seal(bytes(secrets.vmpck0), seqno, gm.MSG_REPORT_REQ, request)
            reply = self.channel.call(Op.SNP_GUEST_REQUEST, message, RESPONSE_SIZE)
            report = self._open_response(reply, seqno + 1)
        except (HostFailure, GuestRequestFailed, gm.GuestMessageError) as exc:
            secrets.disable()
            raise GuestRequestFailed(f"guest request {seqno} failed, VMPCK0 disabled: "
                                     f"{exc}") from exc
        secrets.msg_seqno = seqno + 1
        return report

    def _open_response(self, reply: bytes, seqno: int) -> bytes:
        header = gm.parse_header(reply)  # framing, and length == header + MSG_SIZE
        if header.seqno != seqno:
            raise GuestRequestFailed(f"response sequence number {header.seqno}, "
                                     f"expected {seqno}")
        if header.vmpck != 0:
            raise GuestRequestFailed(f"response under VMPCK{header.vmpck}, not VMPCK0")
        if header.msg_type != gm.MSG_REPORT_RSP or header.msg_version != gm.MSG_VERSION:
            raise GuestRequestFailed(f"response type {header.msg_type} version "
                                     f"{header.msg_version}, expected MSG_REPORT_RSP 1")
        if header.msg_size != gm.REPORT_RSP_SIZE:
            raise GuestRequestFailed(f"response of {header.msg_size} bytes, expected "
                                     f"{gm.REPORT_RSP_SIZE}")
        payload = gm.open_payload(bytes(self.secrets.vmpck0), reply, header)
        status, report = gm.unpack_report_response(payload)
        if status != gm.STATUS_SUCCESS:
            raise GuestRequestFailed(f"the PSP answered status {status:#x}")
        return report


class SnpHost:
    """Relays guest messages to the (simulated) PSP and hands out the certificate table."""

    def __init__(self, psp: snp_sim.SimulatedPsp, certificate_table: bytes):
        self.psp = psp
        self.certificate_table = certificate_table

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op == Op.SNP_GUEST_REQUEST:
            try:
                return self.psp.guest_request(data)
            except snp_sim.GuestRequestRefused as exc:
                raise HostError(f"the PSP refused the guest request: {exc}", errno.EIO) from exc
        if op == Op.SNP_CERTS:
            return self.certificate_table
        raise HostError(f"unsupported op {op}", errno.ENOSYS)


# ------------------------------------------------------------------------------ options


def _bytes_option(options: Mapping[str, Any], key: str, size: int) -> bytes:
    value = options.get(key)
    if value is None:
        return bytes(size)
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise UsageError(f"snp-sim {key}: not hexadecimal") from None
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise UsageError(f"snp-sim {key} must be {size} bytes ({2 * size} hex digits)")
    return bytes(value)


_KNOWN = {"product", "vlek", "report_version", "host_data", "family_id", "image_id", "debug",
          "timeout"}


def open_snp_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices) -> OpenedKeep:
    """A keep on the simulated SEV-SNP machine, its guest measured from ``payload``.

    Options (None means the default):

    - ``product``: ``"milan"`` (default), ``"genoa"`` or ``"turin"`` (Turin: 8-byte chip
      id, FMC in the TCB). The first use of a product generates its simulated AMD chain.
    - ``vlek``: sign with a VLEK (ASVK -> VLEK chain) instead of the chip's VCEK.
    - ``report_version``: 3 (default) or 5.
    - ``host_data``: 32 bytes (or 64 hex digits) for HOST_DATA; default zeros.
    - ``family_id``, ``image_id``: 16 bytes (or 32 hex digits) each; default zeros.
    - ``debug``: set the policy's DEBUG bit (default off).
    - ``timeout``: seconds the shim waits for the host (default 10).

    Unknown options raise UsageError unless unset (None). ``Keep.details`` holds the
    product, measurement and signing-key kind."""
    refuse_unknown_options(options, _KNOWN, "snp-sim")
    try:
        product = snp_sim.product(options.get("product") or "milan")
    except snp_sim.UnknownProduct as exc:
        raise UsageError(str(exc)) from None
    version = options.get("report_version") or 3
    if version not in SUPPORTED_VERSIONS:
        raise UsageError(f"snp-sim report_version must be 3 or 5, not {version!r}")
    vlek = bool(options.get("vlek"))
    launch = snp_sim.GuestLaunch.for_payload(
        payload,
        policy=snp_sim.GuestPolicy(debug=bool(options.get("debug"))),
        host_data=_bytes_option(options, "host_data", 32),
        family_id=_bytes_option(options, "family_id", 16),
        image_id=_bytes_option(options, "image_id", 16),
    )
    platform = snp_sim.snp_platform(product, vlek=vlek)
    vmpck0 = os.urandom(gm.KEY_SIZE)  # the firmware writes it into the secrets page
    psp = snp_sim.SimulatedPsp(platform.chip, launch, vmpck0, platform.signer,
                               report_version=version)
    channel = services.start_host(SnpHost(psp, platform.certificate_table))
    shim = SnpShim(SecretsPage(vmpck0), channel)
    details = {"product": product.name, "measurement": launch.measurement,
               "signing_key": "VLEK" if vlek else "VCEK", "report_version": version}
    return OpenedKeep(shim, details)
