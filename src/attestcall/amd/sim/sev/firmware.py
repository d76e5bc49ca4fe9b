"""A simulated SEV firmware (the AMD secure processor's SEV API), launch commands only.

Each guest has a context with a state, as the SEV API defines them:

    (none) --LAUNCH_START--> LUPDATE --LAUNCH_MEASURE--> LSECRET --LAUNCH_FINISH--> RUNNING
            LAUNCH_UPDATE_DATA in LUPDATE; LAUNCH_SECRET and LAUNCH_MEASURE again in LSECRET

A command in another state is refused (:class:`InvalidGuestState`). LAUNCH_START checks the
GODH certificate, derives the session keys from ECDH with the PDH, checks WRAP_MAC, unwraps
TEK/TIK and checks POLICY_MAC (:class:`BadMeasurement` for a MAC that does not match, as
the firmware reports integrity failures). LAUNCH_MEASURE draws a fresh MNONCE each time;
LAUNCH_SECRET checks the header MAC against the latest measurement and decrypts into guest
memory. SEV-ES (policy bit 2) and compressed secrets are not simulated and are refused.

Status codes are the SEV API's (Linux ``enum sev_ret_code``). The guest's memory is a
:class:`GuestMemory`: plaintext here, encrypted on real hardware (where the host sees only
ciphertext, but can still overwrite it: legacy SEV has no integrity protection).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives import hashes

from attestcall.amd.formats import sev_cert as sc
from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim.sev.state import SevState
from attestcall.errors import AttestcallError

STATUS_INVALID_PLATFORM_STATE = 0x01
STATUS_INVALID_GUEST_STATE = 0x02
STATUS_INVALID_LENGTH = 0x04
STATUS_INVALID_CERTIFICATE = 0x06
STATUS_POLICY_FAILURE = 0x07
STATUS_INVALID_ADDRESS = 0x09
STATUS_BAD_MEASUREMENT = 0x0B
STATUS_INVALID_GUEST = 0x10
STATUS_INVALID_PARAM = 0x16
ALIGN = 16


class FirmwareError(AttestcallError):
    """The simulated firmware refused a command; ``status`` is the SEV API status code."""

    status = STATUS_INVALID_PARAM


class InvalidGuestState(FirmwareError):
    status = STATUS_INVALID_GUEST_STATE


class InvalidGuest(FirmwareError):
    status = STATUS_INVALID_GUEST


class InvalidCertificate(FirmwareError):
    status = STATUS_INVALID_CERTIFICATE


class PolicyFailure(FirmwareError):
    status = STATUS_POLICY_FAILURE


class BadMeasurement(FirmwareError):
    """A MAC under the session's keys failed (session wrap, policy, secret header)."""

    status = STATUS_BAD_MEASUREMENT


class InvalidLength(FirmwareError):
    status = STATUS_INVALID_LENGTH


class InvalidAddress(FirmwareError):
    status = STATUS_INVALID_ADDRESS


class GuestState(Enum):
    LUPDATE = "LUPDATE"
    LSECRET = "LSECRET"
    RUNNING = "RUNNING"


class GuestMemory:
    """A guest's physical memory from address 0, ``size`` bytes."""

    def __init__(self, size: int):
        self.data = bytearray(size)

    def __len__(self) -> int:
        return len(self.data)

    def _check(self, paddr: int, length: int) -> None:
        if paddr < 0 or length < 0 or paddr + length > len(self.data):
            raise InvalidAddress(f"{length} bytes at {paddr:#x} are outside guest memory")

    def read(self, paddr: int, length: int) -> bytes:
        self._check(paddr, length)
        return bytes(self.data[paddr : paddr + length])

    def write(self, paddr: int, data: bytes) -> None:
        self._check(paddr, len(data))
        self.data[paddr : paddr + len(data)] = data


@dataclass(eq=False)
class _Guest:
    policy: int
    tek: bytes
    tik: bytes
    state: GuestState = GuestState.LUPDATE
    digest: hashes.Hash = field(default_factory=lambda: hashes.Hash(hashes.SHA256()))
    launch_digest: bytes | None = None
    measure: bytes | None = None


class SimulatedSevFirmware:
    """The SEV firmware of one simulated platform (its PDH from ``state``)."""

    def __init__(self, state: SevState):
        self.state = state
        self._guests: dict[int, _Guest] = {}
        self._handles = itertools.count(1)

    # ---------------------------------------------------------------- platform commands
    def platform_status(self) -> tuple[int, int, int]:
        """(API major, API minor, build)."""
        return self.state.api_major, self.state.api_minor, self.state.build

    def pdh_cert_export(self) -> bytes:
        """The chain as a tenant needs it: PDH, PEK, OCA, CEK, then AMD's ASK and ARK."""
        return self.state.chain.pack()

    # ---------------------------------------------------------------- launch commands
    def launch_start(self, policy: int, godh_cert: bytes, session: bytes) -> int:
        """Create a guest context; return its handle."""
        if not 0 <= policy <= 0xFFFFFFFF:
            raise PolicyFailure("the policy is a u32")
        if policy & sl.POLICY_ES:
            raise PolicyFailure("SEV-ES is not simulated")
        minimum = ((policy >> 16) & 0xFF, (policy >> 24) & 0xFF)
        if minimum > (self.state.api_major, self.state.api_minor):
            raise PolicyFailure(f"the policy needs firmware API {minimum[0]}.{minimum[1]}")
        try:
            godh = sc.SevCertificate.parse(godh_cert)
            parsed = sl.Session.parse(session)
        except (sc.SevCertError, sl.LaunchError) as exc:
            raise InvalidCertificate(f"LAUNCH_START: {exc}") from exc
        if godh.usage != sc.USAGE_PDH or godh.algo != sc.ALGO_ECDH_SHA256:
            raise InvalidCertificate("the GODH certificate is not an ECDH-SHA256 PDH key")
        public = godh.public_key()
        if public.curve.name != "secp384r1":
            raise InvalidCertificate("the GODH key is not on P-384")
        z = sl.shared_secret(self.state.pdh_key, public)
        try:
            tek, tik = sl.open_session(z, parsed, policy)
        except sl.MacMismatch as exc:
            raise BadMeasurement(f"LAUNCH_START: {exc}") from exc
        handle = next(self._handles)
        self._guests[handle] = _Guest(policy, tek, tik)
        return handle

    def launch_update_data(self, handle: int, memory: GuestMemory, paddr: int,
                           length: int) -> None:
        """Measure (and, on hardware, encrypt in place) ``length`` bytes at ``paddr``."""
        guest = self._guest(handle, GuestState.LUPDATE)
        if paddr % ALIGN or length % ALIGN or length == 0:
            raise InvalidLength(f"LAUNCH_UPDATE_DATA needs 16-byte alignment ({paddr:#x}, "
                                f"{length})")
        guest.digest.update(memory.read(paddr, length))

    def launch_measure(self, handle: int) -> bytes:
        """MEASURE ‖ MNONCE (48 bytes), a fresh MNONCE every time."""
        guest = self._guest(handle, GuestState.LUPDATE, GuestState.LSECRET)
        if guest.launch_digest is None:
            guest.launch_digest = guest.digest.finalize()
        mnonce = os.urandom(sl.NONCE_SIZE)
        api_major, api_minor, build = self.platform_status()
        guest.measure = sl.measurement_mac(guest.tik, api_major, api_minor, build,
                                           guest.policy, guest.launch_digest, mnonce)
        guest.state = GuestState.LSECRET
        return guest.measure + mnonce

    def launch_secret(self, handle: int, header: bytes, packet: bytes, memory: GuestMemory,
                      paddr: int, room: int) -> None:
        """Check the header's MAC (bound to the latest measurement) and decrypt ``packet``
        into guest memory at ``paddr``, where the guest's layout leaves ``room`` bytes."""
        guest = self._guest(handle, GuestState.LSECRET)
        try:
            parsed = sl.PacketHeader.parse(header)
        except sl.LaunchError as exc:
            raise InvalidLength(f"LAUNCH_SECRET: {exc}") from exc
        if not packet or len(packet) % ALIGN or paddr % ALIGN:
            raise InvalidLength("LAUNCH_SECRET needs a non-empty, 16-byte aligned secret")
        if len(packet) > room:
            raise InvalidLength(f"a {len(packet)}-byte secret does not fit the guest's "
                                f"{room}-byte secret page")
        memory.read(paddr, len(packet))  # the target exists
        assert guest.measure is not None
        try:
            plain = sl.open_secret(guest.tek, guest.tik, guest.measure, parsed, bytes(packet))
        except sl.MacMismatch as exc:
            raise BadMeasurement(f"LAUNCH_SECRET: {exc}") from exc
        except sl.LaunchError as exc:
            raise FirmwareError(f"LAUNCH_SECRET: {exc}") from exc
        memory.write(paddr, plain)

    def launch_finish(self, handle: int) -> None:
        guest = self._guest(handle, GuestState.LSECRET)
        guest.state = GuestState.RUNNING
        guest.tek = guest.tik = b""  # the transport keys are no longer needed

    def guest_state(self, handle: int) -> GuestState:
        return self._guest(handle, *GuestState).state

    def _guest(self, handle: int, *states: GuestState) -> _Guest:
        guest = self._guests.get(handle)
        if guest is None:
            raise InvalidGuest(f"no guest with handle {handle}")
        if guest.state not in states:
            raise InvalidGuestState(f"guest {handle} is {guest.state.value}; the command "
                                    f"needs {' or '.join(s.value for s in states)}")
        return guest
