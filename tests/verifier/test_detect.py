"""Telling the technology from the bytes, and reading --at."""

import datetime as dt

import pytest

from attestcall.errors import EvidenceError, UsageError
from attestcall.verifier.detect import detect, parse_instant
from tests import paths

DATA = paths.DATA


def test_vectors_are_recognised():
    assert detect((DATA / "intel" / "sgx_quote_v3.bin").read_bytes()).name == "sgx"
    assert detect((DATA / "intel" / "tdx_quote_v4.bin").read_bytes()).name == "tdx"
    assert detect((DATA / "amd" / "milan_report_v2.bin").read_bytes()).name == "snp"


@pytest.mark.parametrize("data", [b"", b"\0" * 2000, b"\xff" * 48, b"garbage" * 300])
def test_unknown_bytes_ask_for_tech(data):
    with pytest.raises(EvidenceError, match="--tech"):
        detect(data)


def test_truncated_report_is_not_guessed():
    report = (DATA / "amd" / "milan_report_v2.bin").read_bytes()
    with pytest.raises(EvidenceError):
        detect(report[:1000])


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2025-07-19T10:01:17Z", dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)),
        ("2025-07-19T12:01:17+02:00", dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)),
        ("1752919277", dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)),
        (1752919277, dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)),
        (dt.datetime(2025, 7, 19, 12, 1, 17, tzinfo=dt.timezone(dt.timedelta(hours=2))),
         dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)),
    ],
)
def test_instants(value, expected):
    assert parse_instant(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2025-07-19T10:01:17", "99999999999999999999",
                                   dt.datetime(2025, 1, 1), True])
def test_bad_instants(value):
    with pytest.raises(UsageError):
        parse_instant(value)


def test_default_instant_is_now():
    assert abs(parse_instant(None) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
