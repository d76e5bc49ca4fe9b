"""A simulated AMD SEV (legacy, pre-attestation) platform.

- :mod:`.state`: the platform on disk under ``sim_home()/sev/`` (ARK/ASK in AMD's format,
  CEK/OCA/PEK/PDH in the SEV format; keys mode 0600); :func:`simulated_ark`.
- :mod:`.firmware`: :class:`SimulatedSevFirmware`, the launch commands and their state
  machine, writing the secret into a :class:`GuestMemory`.

The formats and the tenant's crypto are real (:mod:`attestcall.amd.sev_cert`,
:mod:`attestcall.amd.sev_launch`). This package is the ``"sev"`` entry of
:data:`attestcall.simstate.PLATFORMS`.
"""

from attestcall.amd.sev_sim.firmware import (
    BadMeasurement,
    FirmwareError,
    GuestMemory,
    GuestState,
    InvalidAddress,
    InvalidCertificate,
    InvalidGuest,
    InvalidGuestState,
    InvalidLength,
    PolicyFailure,
    SimulatedSevFirmware,
)
from attestcall.amd.sev_sim.state import (
    SevState,
    create_state,
    describe_state,
    load_state,
    read_state,
    simulated_ark,
)

__all__ = [
    "BadMeasurement",
    "FirmwareError",
    "GuestMemory",
    "GuestState",
    "InvalidAddress",
    "InvalidCertificate",
    "InvalidGuest",
    "InvalidGuestState",
    "InvalidLength",
    "PolicyFailure",
    "SevState",
    "SimulatedSevFirmware",
    "create_state",
    "describe_state",
    "load_state",
    "read_state",
    "simulated_ark",
]
