"""Time Intel quote appraisal: warm (collateral cache filled), cold, dcap-qvl, and the floor.

Run as ``python bench/bench_verify_intel.py``. For the SGX v3 and TDX v4 vectors at their
documented instants it prints, per verification:

- warm: ``appraise_intel`` with the collateral/chain cache already filled;
- cold: ``Collateral.load`` (from the parsed JSON dict: both CRLs, the TCB info and QE
  identity JSON text, the issuer chains) + ``appraise_intel`` after ``clear_cache()`` each
  time. Every check runs: the ~9 ECDSA verifications (PCK chain links, TCB signing chain,
  PCK CRL issuer chain, TCB info, QE identity, both CRLs, QE report, quote), CRL lookups,
  validity windows, names, PCK extension, TCB evaluation. What stays is parsing only, keyed
  by exact bytes: the pinned root (loaded once), parsed certificates by their DER and PEM
  chains by their text (the collateral's chains and the PCK chain repeat the same root and
  CA), the CRLs' structure, and the roots' encodings -- no verification result;
- cold, unparsed: as cold, but ``clear_cache(parsed=True)`` also forgets those parses
  (every certificate is loaded from PEM again);
- dcap-qvl: ``dcap_qvl.verify`` on the same quote, collateral and instant;
- floor: two ECDSA P-256 (SHA-256) verifications with ``cryptography`` (the quote's and the
  QE report's), measured in the same run;
- public API: ``attestcall.verify(quote, collateral=..., at=...)`` with the same collateral
  given again each time as a path, bytes, str or loaded object, and
  ``attestcall.Verifier(collateral_source=...).verify(quote, at=...)`` likewise: what a
  user's repeated verification costs (target <= 0.5x dcap-qvl, as warm).

Each figure is the best of several rounds (the median round is printed too), which keeps
noise from other processes out of the ratios. Targets: warm <= 0.5x dcap-qvl and <= 2x
floor; cold <= 1.5x dcap-qvl. A figure that misses its target is marked MISSED.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dcap_qvl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from timing import missed

import attestcall
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.roots import intel_root
from attestcall.intel.verify.appraise import appraise_intel, clear_cache

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "intel"
VECTORS = (
    ("SGX v3", "sgx_quote_v3", "2025-07-19T10:01:17Z"),
    ("TDX v4", "tdx_quote_v4", "2025-07-19T10:00:33Z"),
)
ROUNDS = 7
PER_ROUND = 200


def per_call(
    fn: Callable[[], object], rounds: int = ROUNDS, n: int = PER_ROUND
) -> tuple[float, float]:
    """(best, median) seconds per call over ``rounds`` rounds of ``n`` calls."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return min(times), statistics.median(times)


def floor_fn() -> Callable[[], None]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    algorithm = ec.ECDSA(hashes.SHA256())
    quote_data, qe_data = b"q" * 632, b"r" * 384
    quote_sig, qe_sig = key.sign(quote_data, algorithm), key.sign(qe_data, algorithm)

    def two() -> None:
        public.verify(quote_sig, quote_data, algorithm)
        public.verify(qe_sig, qe_data, algorithm)

    return two


def bench_vector(label: str, name: str, instant: str, roots: list, floor: float) -> bool:
    """Print one vector's figures; whether they meet the targets."""
    quote = (DATA / f"{name}.bin").read_bytes()
    text = (DATA / f"{name}.collateral.json").read_text()
    as_dict = json.loads(text)
    at = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    collateral = Collateral.load(as_dict)
    qvl_collateral = dcap_qvl.QuoteCollateralV3.from_json(text)
    now = int(at.timestamp())

    result = appraise_intel(quote, collateral=collateral, at=at, roots=roots)
    assert not result.problems, result.problems
    report = dcap_qvl.verify(quote, qvl_collateral, now)
    assert report.status == result.tcb_status, (report.status, result.tcb_status)

    def warm() -> None:
        appraise_intel(quote, collateral=collateral, at=at, roots=roots)

    def cold() -> None:
        clear_cache()
        appraise_intel(quote, collateral=Collateral.load(as_dict), at=at, roots=roots)

    def cold_loaded() -> None:
        clear_cache()
        appraise_intel(quote, collateral=collateral, at=at, roots=roots)

    def cold_unparsed() -> None:
        clear_cache(parsed=True)
        appraise_intel(quote, collateral=Collateral.load(as_dict), at=at, roots=roots)

    def qvl() -> None:
        dcap_qvl.verify(quote, qvl_collateral, now)

    path = DATA / f"{name}.collateral.json"
    public = {"API, path": path, "API, bytes": text.encode(), "API, str": text,
              "API, object": collateral}
    for given in public.values():
        verdict = attestcall.verify(quote, collateral=given, at=at)
        assert verdict.tcb_status == result.tcb_status, verdict.reasons

    w, w_med = per_call(warm)
    c, c_med = per_call(cold)
    cl, cl_med = per_call(cold_loaded)
    cu, cu_med = per_call(cold_unparsed)
    q, q_med = per_call(qvl)
    met = w / q <= 0.5 and w / floor <= 2 and c / q <= 1.5
    print(f"{label:8} {'warm':14} {w * 1e6:9.1f} {w_med * 1e6:9.1f}  "
          f"{w / q:.2f}x dcap-qvl (<= 0.5){missed(w / q, 0.5)}, "
          f"{w / floor:.2f}x floor (<= 2){missed(w / floor, 2)}")  # fmt: skip
    print(f"{label:8} {'cold':14} {c * 1e6:9.1f} {c_med * 1e6:9.1f}  "
          f"{c / q:.2f}x dcap-qvl (<= 1.5){missed(c / q, 1.5)}")  # fmt: skip
    print(f"{label:8} {'cold, parsed':14} {cl * 1e6:9.1f} {cl_med * 1e6:9.1f}  "
          f"{cl / q:.2f}x dcap-qvl (collateral already loaded)")  # fmt: skip
    print(f"{label:8} {'cold, unparsed':14} {cu * 1e6:9.1f} {cu_med * 1e6:9.1f}  "
          f"{cu / q:.2f}x dcap-qvl (no parsed certificate kept either)")  # fmt: skip
    print(f"{label:8} {'dcap-qvl':14} {q * 1e6:9.1f} {q_med * 1e6:9.1f}")
    for what, given in public.items():
        verifier = attestcall.Verifier(collateral_source=given)
        for row, fn in ((what, lambda given=given: attestcall.verify(quote, collateral=given,
                                                                     at=at)),
                        (f"Verifier, {what[5:]}",
                         lambda verifier=verifier: verifier.verify(quote, at=at))):
            p, p_med = per_call(fn)
            met = met and p / q <= 0.5
            print(f"{label:8} {row:17} {p * 1e6:6.1f} {p_med * 1e6:9.1f}  "
                  f"{p / q:.2f}x dcap-qvl (<= 0.5){missed(p / q, 0.5)}")  # fmt: skip
    return met


def main() -> int:
    floor, floor_med = per_call(floor_fn())
    roots = [intel_root()]
    print(f"floor (2 x ECDSA P-256 verify): {floor * 1e6:7.1f} us  (median {floor_med * 1e6:.1f})")
    print()
    header = f"{'vector':8} {'what':14} {'best us':>9} {'median':>9}  ratios (best)"
    print(header)
    print("-" * len(header))
    met = [bench_vector(label, name, instant, roots, floor) for label, name, instant in VECTORS]
    clear_cache()
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
