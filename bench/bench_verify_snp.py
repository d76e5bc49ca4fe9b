"""Per-appraisal cost of SEV-SNP verification against one ECDSA P-384 verification.

Run: ``python bench/bench_verify_snp.py``. One appraisal of ``milan_report_v2.bin`` with its
VCEK (given as ``--certs`` DER) and the pinned ARKs: strict report parse, the report's
ECDSA P-384 signature, VCEK -> ASK -> ARK (three RSA-4096 PSS verifications when cold),
validity, TCB and chip checks, claims. Warm reuses the chain cache (keyed by exact DER
bytes); cold clears every cache first. The baseline, one ECDSA P-384 SHA-384 verification
over the same 672 signed bytes, is measured in the same run; all are medians over rounds.
Target: warm ratio <= 1.5.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from timing import missed
from timing import per_call as _per_call

from attestcall.amd.formats import report as snp
from attestcall.amd.formats.certs import load_certificate
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp, clear_caches

ROUNDS = 21
PER_ROUND = 100
TARGET_RATIO = 1.5
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "amd"


def per_call(function: Callable[[], object], per_round: int = PER_ROUND) -> float:
    """Median seconds per call over ROUNDS rounds of ``per_round`` calls."""
    return _per_call(function, ROUNDS, per_round)


def main() -> int:
    report = (DATA / "milan_report_v2.bin").read_bytes()
    vcek = (DATA / "milan_report_v2.vcek.der").read_bytes()
    at = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    arks = amd_arks()

    key = load_certificate(vcek).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signed = report[:snp.SIGNED_SIZE]
    signature = snp.parse(report).signature_der()

    def one_verification() -> None:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA384()))

    def warm() -> object:
        return appraise_snp(report, certs=vcek, at=at, arks=arks)

    def cold() -> object:
        clear_caches()
        return appraise_snp(report, certs=vcek, at=at, arks=arks)

    assert warm().problems == []  # type: ignore[attr-defined]
    per_call(one_verification)  # warm up
    baseline = per_call(one_verification)
    warm_time = per_call(warm)
    cold_time = per_call(cold, per_round=10)
    ratio = warm_time / baseline
    print(f"ECDSA P-384 verification : {baseline * 1e6:8.1f} us (median of {ROUNDS} rounds)")
    print(f"SNP appraisal, warm      : {warm_time * 1e6:8.1f} us, {ratio:.2f}x "
          f"(target <= {TARGET_RATIO}x){missed(ratio, TARGET_RATIO)}")
    print(f"SNP appraisal, cold      : {cold_time * 1e6:8.1f} us, {cold_time / baseline:.2f}x "
          "(caches cleared: certificate loads and three RSA-4096 PSS verifications)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
