"""How long the command line takes to start, against the interpreter's own start.

    python bench/bench_cli_start.py [ROUNDS]

Each command runs as a fresh process (``python -m attestcall ...``), interleaved with the
baseline ``python -c "import argparse"`` so both see the same machine. Reported: the median
wall time of each and its ratio to the baseline. ``attestcall --help`` and the commands
that need no TEE never load the TEE registry; ``run --help`` and ``verify --help`` do
(entry points, then the small plugin records). Targets: ``--help`` at most 2.0x the
baseline, ``run --help`` and ``verify --help`` at most 2.2x (before the registry existed
all three were 1.8x on the same machine)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

CASES = {
    "baseline: python -c 'import argparse'": ([sys.executable, "-c", "import argparse"], None),
    "attestcall --help": ([sys.executable, "-m", "attestcall", "--help"], 2.0),
    "attestcall run --help": ([sys.executable, "-m", "attestcall", "run", "--help"], 2.2),
    "attestcall verify --help": ([sys.executable, "-m", "attestcall", "verify", "--help"], 2.2),
}


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(count):
        for name, (argv, _) in CASES.items():
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(next(iter(times.values())))
    missed = 0
    for name, (_, target) in CASES.items():
        median = statistics.median(times[name])
        ratio = median / base
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target}x" + ("" if ratio <= target else "  MISSED")
            missed += ratio > target
        print(f"{name:<40} {median * 1000:7.1f} ms  {ratio:4.2f}x{verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
