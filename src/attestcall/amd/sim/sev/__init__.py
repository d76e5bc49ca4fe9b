"""A simulated AMD SEV (legacy, pre-attestation) platform.

- :mod:`.state`: the platform on disk under ``sim_home()/sev/`` (ARK/ASK in AMD's format,
  CEK/OCA/PEK/PDH in the SEV format; keys mode 0600); :func:`simulated_ark`.
- :mod:`.firmware`: :class:`SimulatedSevFirmware`, the launch commands and their state
  machine, writing the secret into a :class:`GuestMemory`.

The formats and the tenant's crypto are real (:mod:`attestcall.amd.formats.sev_cert`,
:mod:`attestcall.amd.formats.sev_launch`). Its state is the ``sev`` folder of
the simulated-platform home (the SEV plugin record's ``sim_state``).
"""

from attestcall.amd.sim.sev.firmware import (
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
from attestcall.amd.sim.sev.state import (
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
