"""The simulated SEV firmware: the launch state machine, and its refusals of tampered
sessions, tampered secret packets and secrets bound to the wrong measurement."""

from __future__ import annotations

import os

import pytest

from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim import sev as sev_sim
from attestcall.amd.sim.sev import GuestState

DATA = b"guest image".ljust(32, b"\0")


@pytest.fixture
def firmware() -> sev_sim.SimulatedSevFirmware:
    return sev_sim.SimulatedSevFirmware(sev_sim.load_state())


@pytest.fixture
def memory() -> sev_sim.GuestMemory:
    memory = sev_sim.GuestMemory(0x2000)
    memory.write(0, DATA)
    return memory


def started(firmware, policy: int = sl.DEFAULT_POLICY) -> tuple[sl.Tenant, sl.LaunchStart, int]:
    tenant = sl.Tenant([firmware.state.chain.ark.pack()], policy)
    start = tenant.start(firmware.pdh_cert_export())
    return tenant, start, firmware.launch_start(start.policy, start.godh_cert, start.session)


def measured(firmware, memory) -> tuple[sl.Tenant, int, bytes]:
    tenant, _, handle = started(firmware)
    firmware.launch_update_data(handle, memory, 0, len(DATA))
    raw = firmware.launch_measure(handle)
    report = sl.MeasurementReport(raw[:32], raw[32:], *firmware.platform_status(),
                                  sl.DEFAULT_POLICY)
    tenant.verify_measurement(report, sl.launch_digest(DATA))
    return tenant, handle, raw


def test_the_whole_launch(firmware, memory) -> None:
    tenant, handle, _ = measured(firmware, memory)
    assert firmware.guest_state(handle) is GuestState.LSECRET
    header, packet = tenant.secret(b"k" * 48)
    firmware.launch_secret(handle, header, packet, memory, 0x1000, 0x1000)
    assert memory.read(0x1000, 48) == b"k" * 48
    firmware.launch_finish(handle)
    assert firmware.guest_state(handle) is GuestState.RUNNING


def test_mnonce_is_fresh_each_time(firmware, memory) -> None:
    _, handle, first = measured(firmware, memory)
    second = firmware.launch_measure(handle)
    assert first[32:] != second[32:] and first[:32] != second[:32]


@pytest.mark.parametrize("offset", [0, 16, 48, 64, 96, 127])
def test_a_tampered_session_is_refused(firmware, offset) -> None:
    tenant = sl.Tenant([firmware.state.chain.ark.pack()])
    start = tenant.start(firmware.pdh_cert_export())
    session = bytearray(start.session)
    session[offset] ^= 0x01
    with pytest.raises(sev_sim.BadMeasurement) as info:
        firmware.launch_start(start.policy, start.godh_cert, bytes(session))
    assert info.value.status == 0x0B


def test_a_policy_other_than_the_macd_one_is_refused(firmware) -> None:
    tenant = sl.Tenant([firmware.state.chain.ark.pack()], policy=sl.DEFAULT_POLICY)
    start = tenant.start(firmware.pdh_cert_export())
    with pytest.raises(sev_sim.BadMeasurement, match="POLICY_MAC"):
        firmware.launch_start(sl.POLICY_NODBG, start.godh_cert, start.session)


def test_another_godh_key_is_refused(firmware) -> None:
    _, start, _ = started(firmware)
    _, other, _ = started(firmware)
    with pytest.raises(sev_sim.BadMeasurement):
        firmware.launch_start(start.policy, other.godh_cert, start.session)


@pytest.mark.parametrize("policy, message", [
    (sl.POLICY_ES, "SEV-ES"),
    (0xFF << 16, "needs firmware API"),
])
def test_unsupported_policies_are_refused(firmware, policy, message) -> None:
    tenant = sl.Tenant([firmware.state.chain.ark.pack()], policy)
    start = tenant.start(firmware.pdh_cert_export())
    with pytest.raises(sev_sim.PolicyFailure, match=message):
        firmware.launch_start(start.policy, start.godh_cert, start.session)


def test_a_malformed_godh_certificate_is_refused(firmware) -> None:
    _, start, _ = started(firmware)
    chain = firmware.state.chain
    with pytest.raises(sev_sim.InvalidCertificate):
        firmware.launch_start(start.policy, start.godh_cert[:-1], start.session)
    with pytest.raises(sev_sim.InvalidCertificate, match="PDH"):
        firmware.launch_start(start.policy, chain.pek.pack(), start.session)


@pytest.mark.parametrize("where", ["header-mac", "header-iv", "packet"])
def test_a_tampered_secret_packet_is_refused(firmware, memory, where) -> None:
    tenant, handle, _ = measured(firmware, memory)
    header, packet = (bytearray(x) for x in tenant.secret(b"k" * 32))
    target = {"header-mac": (header, 30), "header-iv": (header, 5), "packet": (packet, 3)}
    buf, index = target[where]
    buf[index] ^= 0x40
    with pytest.raises(sev_sim.BadMeasurement):
        firmware.launch_secret(handle, bytes(header), bytes(packet), memory, 0x1000, 0x1000)
    assert not any(memory.read(0x1000, 32))  # nothing written


def test_a_secret_bound_to_another_measurement_is_refused(firmware, memory) -> None:
    tenant, handle, _ = measured(firmware, memory)
    header, packet = tenant.secret(b"k" * 32)
    firmware.launch_measure(handle)  # a new MNONCE, so a new MEASURE
    with pytest.raises(sev_sim.BadMeasurement):
        firmware.launch_secret(handle, header, packet, memory, 0x1000, 0x1000)
    forged_header, forged = sl.seal_secret(tenant._tek, tenant._tik, os.urandom(32), b"k" * 32)
    with pytest.raises(sev_sim.BadMeasurement):
        firmware.launch_secret(handle, forged_header.pack(), forged, memory, 0x1000, 0x1000)


def test_a_secret_too_large_for_the_page_is_refused(firmware, memory) -> None:
    tenant, handle, _ = measured(firmware, memory)
    header, packet = tenant.secret(b"k" * 0x1010)
    with pytest.raises(sev_sim.InvalidLength, match="does not fit"):
        firmware.launch_secret(handle, header, packet, memory, 0x1000, 0x1000)
    header, packet = tenant.secret(b"k" * 32)
    with pytest.raises(sev_sim.InvalidAddress):
        firmware.launch_secret(handle, header, packet, memory, 0x1FF0, 0x1000)
    with pytest.raises(sev_sim.InvalidLength):
        firmware.launch_secret(handle, header, packet[:-1], memory, 0x1000, 0x1000)


def test_commands_out_of_order_are_refused(firmware, memory) -> None:
    with pytest.raises(sev_sim.InvalidGuest):
        firmware.launch_measure(99)
    tenant, _, handle = started(firmware)
    with pytest.raises(sev_sim.InvalidGuestState):
        firmware.launch_finish(handle)  # not measured
    with pytest.raises(sev_sim.InvalidGuestState):
        firmware.launch_secret(handle, bytes(0x34), bytes(16), memory, 0x1000, 0x1000)
    firmware.launch_update_data(handle, memory, 0, 32)
    firmware.launch_measure(handle)
    with pytest.raises(sev_sim.InvalidGuestState) as info:
        firmware.launch_update_data(handle, memory, 0, 32)  # measured: no more data
    assert info.value.status == 0x02
    firmware.launch_finish(handle)
    for command in (lambda: firmware.launch_measure(handle),
                    lambda: firmware.launch_finish(handle),
                    lambda: firmware.launch_secret(handle, bytes(0x34), bytes(16), memory,
                                                   0x1000, 0x1000)):
        with pytest.raises(sev_sim.InvalidGuestState):
            command()


def test_update_data_alignment(firmware, memory) -> None:
    _, _, handle = started(firmware)
    with pytest.raises(sev_sim.InvalidLength):
        firmware.launch_update_data(handle, memory, 0, 17)
    with pytest.raises(sev_sim.InvalidLength):
        firmware.launch_update_data(handle, memory, 8, 16)
    with pytest.raises(sev_sim.InvalidAddress):
        firmware.launch_update_data(handle, memory, 0x2000, 16)
