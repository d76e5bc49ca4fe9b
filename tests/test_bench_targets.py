"""Every benchmark that prints a target flags a missed one with MISSED (issue 12)."""

import re
import sys

from tests import paths

BENCH = paths.REPO / "bench"


def test_every_printed_target_can_be_flagged():
    for script in sorted(BENCH.glob("bench_*.py")):
        text = script.read_text()
        targets = re.findall(r"target[^\"\n]*(?:<=|>=|≤|≥)", text)
        if targets:
            assert "MISSED" in text or "missed(" in text, script.name


def test_missed():
    sys.path.insert(0, str(BENCH))
    try:
        from timing import missed
    finally:
        sys.path.remove(str(BENCH))
    assert missed(1.4, 1.5) == "" and missed(1.6, 1.5) == "  MISSED"
    assert missed(2.0, 1.5, at_least=True) == ""
    assert missed(1.0, 1.5, at_least=True) == "  MISSED"
