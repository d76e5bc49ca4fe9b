"""tees.refuse_unknown_options: the one check every simulated keep makes of its options."""

from __future__ import annotations

import pytest

from attestcall.errors import UsageError
from attestcall.keep.platforms import open_keep
from attestcall.tees import refuse_unknown_options


def test_only_options_given_a_value_count():
    refuse_unknown_options({"rem0": b"x", "mrenclave": None, "identity": {"isv_svn": None}},
                           {"rem0"}, "cca-sim")
    with pytest.raises(UsageError, match="option 'mrenclave' does not apply to cca-sim"):
        refuse_unknown_options({"mrenclave": bytes(32)}, {"rem0"}, "cca-sim")
    with pytest.raises(UsageError, match="option 'identity' does not apply to x-sim"):
        refuse_unknown_options({"identity": {"isv_svn": 1}}, set(), "x-sim")


@pytest.mark.parametrize("keep, option", [("snp-sim", "rem0"), ("sev-sim", "host_data"),
                                          ("cca-sim", "vlek")])
def test_each_simulator_refuses_another_ones_option(keep, option):
    with pytest.raises(UsageError, match=f"option '{option}' does not apply to {keep}"):
        open_keep(keep, b"", **{option: True})
