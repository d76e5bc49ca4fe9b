"""SEV (legacy, pre-attestation) in the keep: the shim's secret page, the loader, and the
provisioning API the tenant drives.

Launch, as on a SEV machine (the loader and firmware here are simulated):

1. The untrusted host (:class:`SevHost`) lays out the guest's memory: the shim's image at
   ``SHIM_PADDR`` (its header names the secret page: address and size), the secret page,
   the payload at ``PAYLOAD_PADDR``. After LAUNCH_START it measures the shim image and the
   payload (LAUNCH_UPDATE_DATA, each zero-padded to 16 bytes), so the tenant's expected
   digest (:func:`expected_digest`) covers where the secret goes.
2. :class:`SevLaunch` is the provisioning API, bytes in and out, for a tenant anywhere
   (``attestcall.amd.formats.sev_launch.Tenant`` is the other side)::

       platform_chain() -> bytes                       PDH, PEK, OCA, CEK, ASK, ARK
       start(godh_cert: bytes, session: bytes, policy: int) -> None
       measurement() -> MeasurementReport              .pack() gives 56 bytes
       inject_secret(header: bytes, packet: bytes) -> None
       finish() -> OpenedKeep                          the running keep (its shim)

3. The firmware decrypts the secret (an EFI secret table, see ``attestcall.amd.client.efi_secret``)
   into the secret page. At run time :class:`SevShim` reads the page: it checks the table
   (header GUID, length within the page, entry bounds) before copying the entry with
   attestcall's GUID: the tenant's PKCS#8 key, the evidence of technology 1. Anything else
   (no secret yet, a corrupted page: legacy SEV does not protect the integrity of guest
   memory against the host) is -EIO. The nonce is ignored (docs/design.md section 1).

At run time the shim needs nothing from the host, so a SEV keep has no host process and
no request-block operation: the secret is in the guest's own (encrypted) memory.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from attestcall.abi import PlatformFailure, Technology
from attestcall.amd.client import efi_secret
from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim import sev as sev_sim
from attestcall.amd.sim.sev import GuestMemory, SimulatedSevFirmware
from attestcall.errors import AttestcallError, UsageError
from attestcall.tees import KeepServices, OpenedKeep, refuse_unknown_options

SHIM_PADDR = 0x10_0000
SHIM_IMAGE_SIZE = 0x1000
SECRET_PADDR = SHIM_PADDR + SHIM_IMAGE_SIZE
SECRET_PAGE_SIZE = 0x1000
PAYLOAD_PADDR = 0x20_0000
SHIM_MAGIC = b"ATTESTCALL-SEVSH"
_SHIM_HEADER = struct.Struct("<16sIIQQ")  # magic, version, reserved, secret paddr, size
SHIM_VERSION = 1


class SecretMissing(PlatformFailure):
    """The secret page holds no usable attestcall secret (-EIO)."""


class LaunchOrderError(AttestcallError):
    """A provisioning call came out of order on the host side (e.g. measure before start)."""


def _pad16(data: bytes) -> bytes:
    return bytes(data) + bytes(-len(data) % 16)


def shim_image(secret_paddr: int = SECRET_PADDR, secret_size: int = SECRET_PAGE_SIZE) -> bytes:
    """The simulated shim's measured image: a header naming its secret page, zero-filled."""
    header = _SHIM_HEADER.pack(SHIM_MAGIC, SHIM_VERSION, 0, secret_paddr, secret_size)
    return header + bytes(SHIM_IMAGE_SIZE - len(header))


def expected_digest(payload: bytes) -> bytes:
    """The launch digest a correct host produces for ``payload``: what the tenant expects."""
    return sl.launch_digest(shim_image(), _pad16(payload))


# ------------------------------------------------------------------------------ shim


class SevShim:
    """SEV: the evidence is the PKCS#8 key the tenant put in the secret page."""

    technology = Technology.SEV

    def __init__(self, memory: GuestMemory, page_paddr: int = SECRET_PADDR,
                 page_size: int = SECRET_PAGE_SIZE):
        self.memory = memory
        self.page_paddr = page_paddr
        self.page_size = page_size

    def _secret(self) -> bytes:
        page = self.memory.read(self.page_paddr, self.page_size)  # one snapshot
        try:
            entries = efi_secret.parse_table(page)
        except efi_secret.SecretTableError as exc:
            raise SecretMissing(f"the secret page holds no valid secret table: {exc}") from exc
        key = entries.get(efi_secret.ATTESTCALL_KEY_GUID)
        if not key:
            raise SecretMissing("the secret table has no attestcall key entry")
        return key

    def evidence_size(self) -> int:
        return len(self._secret())

    def evidence(self, nonce: bytes) -> bytes:
        del nonce  # pre-attestation: the nonce is ignored
        return self._secret()


# ------------------------------------------------------------------------------ host


class SevHost:
    """The untrusted loader: guest memory layout, LAUNCH_* relayed to the firmware."""

    def __init__(self, firmware: SimulatedSevFirmware, payload: bytes):
        self.firmware = firmware
        self.image = shim_image()
        self.payload = _pad16(payload)
        self.memory = GuestMemory(PAYLOAD_PADDR + max(len(self.payload), 16))
        self.memory.write(SHIM_PADDR, self.image)
        self.memory.write(PAYLOAD_PADDR, self.payload)
        magic, _version, _, self.secret_paddr, self.secret_size = \
            _SHIM_HEADER.unpack_from(self.image, 0)
        assert magic == SHIM_MAGIC
        self.handle: int | None = None

    def launch_start(self, godh_cert: bytes, session: bytes, policy: int) -> None:
        if self.handle is not None:
            raise LaunchOrderError("LAUNCH_START was already done for this guest")
        self.handle = self.firmware.launch_start(policy, godh_cert, session)
        self.firmware.launch_update_data(self.handle, self.memory, SHIM_PADDR, len(self.image))
        if self.payload:
            self.firmware.launch_update_data(self.handle, self.memory, PAYLOAD_PADDR,
                                             len(self.payload))

    def _handle(self) -> int:
        if self.handle is None:
            raise LaunchOrderError("LAUNCH_START has not been done")
        return self.handle

    def launch_measure(self) -> bytes:
        return self.firmware.launch_measure(self._handle())

    def launch_secret(self, header: bytes, packet: bytes) -> None:
        self.firmware.launch_secret(self._handle(), header, packet, self.memory,
                                    self.secret_paddr, self.secret_size)

    def launch_finish(self) -> None:
        self.firmware.launch_finish(self._handle())


# ------------------------------------------------------------------------------ provisioning


class SevLaunch:
    """One guest's launch on the simulated SEV platform, driven by a tenant.

    Every method takes and returns bytes (or a MeasurementReport with ``pack()``), so a
    network protocol can carry the calls. Firmware refusals raise
    ``attestcall.amd.sim.sev.FirmwareError`` subclasses; calls in the wrong order raise
    LaunchOrderError or ``sev_sim.InvalidGuestState``."""

    def __init__(self, payload: bytes, firmware: SimulatedSevFirmware | None = None):
        self.firmware = firmware if firmware is not None else \
            SimulatedSevFirmware(sev_sim.load_state())
        self.payload = bytes(payload)
        self.host = SevHost(self.firmware, self.payload)
        self.policy: int | None = None
        self._finished = False

    @property
    def expected_digest(self) -> bytes:
        return expected_digest(self.payload)

    def platform_chain(self) -> bytes:
        return self.firmware.pdh_cert_export()

    def start(self, godh_cert: bytes, session: bytes, policy: int) -> None:
        self.host.launch_start(bytes(godh_cert), bytes(session), int(policy))
        self.policy = int(policy)

    def measurement(self) -> sl.MeasurementReport:
        raw = self.host.launch_measure()
        major, minor, build = self.firmware.platform_status()
        assert self.policy is not None
        return sl.MeasurementReport(raw[:32], raw[32:48], major, minor, build, self.policy)

    def inject_secret(self, header: bytes, packet: bytes) -> None:
        self.host.launch_secret(bytes(header), bytes(packet))

    def finish(self, details: Mapping[str, Any] | None = None) -> OpenedKeep:
        """LAUNCH_FINISH, then the running keep (its shim reads the secret page)."""
        if self._finished:
            raise LaunchOrderError("LAUNCH_FINISH was already done")
        self.host.launch_finish()
        self._finished = True
        shim = SevShim(self.host.memory, self.host.secret_paddr, self.host.secret_size)
        info = {"launch_digest": self.expected_digest.hex(), "policy": self.policy,
                **(details or {})}
        return OpenedKeep(shim, info)


class SevProvisioner:
    """Launches of this keep for a remote owner (``attestcall.deploy.provisioning.
    Provisioner``): a fresh :class:`SevLaunch` of ``payload`` per tenant, on one firmware.
    ``owner_choices`` names the options the local caller fixed (a key, a policy) that a
    remote owner chooses instead."""

    technology = Technology.SEV

    def __init__(self, firmware: SimulatedSevFirmware, payload: bytes,
                 owner_choices: tuple[str, ...] = ()):
        self.firmware = firmware
        self.payload = bytes(payload)
        self.owner_choices = owner_choices

    def describe(self) -> str:
        what = f"{len(self.payload)}-byte payload" if self.payload else "empty payload"
        return (f"SEV launch digest of this keep (shim image, {what}): "
                f"{expected_digest(self.payload).hex()}")

    def launch(self) -> SevLaunch:
        return SevLaunch(self.payload, firmware=self.firmware)


# ------------------------------------------------------------------------------ opening

_KNOWN = {"key", "policy", "timeout"}


def _private_key(value: Any) -> PrivateKeyTypes:
    if value is None:
        return ec.generate_private_key(ec.SECP384R1())
    if isinstance(value, bytes | bytearray):
        try:
            return serialization.load_der_private_key(bytes(value), None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"sev-sim key: not an unencrypted PKCS#8 DER key: {exc}") from None
    if hasattr(value, "private_bytes"):
        return value
    raise UsageError("sev-sim key must be a private key or PKCS#8 DER bytes")


def open_sev_sim(payload: bytes, options: Mapping[str, Any],
                 services: KeepServices | None = None) -> OpenedKeep:
    """A keep on the simulated SEV platform, provisioned here by a local tenant.

    Options (None means the default): ``key`` (the private key to deliver, a
    ``cryptography`` private key or PKCS#8 DER; default a fresh P-384 key), ``policy``
    (the guest policy, default NODBG|NOKS), ``timeout`` (accepted, unused: the SEV shim
    never waits for the host). The local tenant trusts the simulated ARK explicitly.
    ``details`` holds the public key (PEM), the launch digest and the policy.
    ``provisioner`` launches this payload afresh for a remote tenant
    (:class:`SevProvisioner`; ``sev_launch.Tenant`` is the other side)."""
    refuse_unknown_options(options, _KNOWN, "sev-sim")
    key = _private_key(options.get("key"))
    policy = options.get("policy")
    policy = sl.DEFAULT_POLICY if policy is None else int(policy)
    launch = SevLaunch(payload)
    tenant = sl.Tenant([launch.firmware.state.chain.ark.pack()], policy)
    tenant.provision(launch, launch.expected_digest, key)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    keep = launch.finish({"public_key": public.decode()})
    fixed = tuple(name for name in ("key", "policy") if options.get(name) is not None)
    keep.provisioner = SevProvisioner(launch.firmware, payload, fixed)
    return keep
