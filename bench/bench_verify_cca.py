"""Per-appraisal cost of CCA token verification against its two ECDSA P-384 verifications.

Run: ``python bench/bench_verify_cca.py``. One appraisal of the public draft-ffm-00 token
(tests/data/arm) with its CPAK given as PEM: strict decoding of the collection, both
COSE_Sign1 tokens and both claim sets (13 software components), the realm signature with
the RAK (a COSE_Key), the binding, the platform signature with the CPAK, claims. Cold
clears the signature cache first; warm finds both signatures checked (the cache is keyed
by the tokens' exact bytes and the key). The baseline, the two ECDSA P-384 SHA-384
verifications over the same Sig_structures, is measured in the same run; medians over
rounds. Target: cold ratio <= 1.3 (decoding costs less than a third of the signatures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from timing import missed
from timing import per_call as _per_call

from attestcall.arm.fetch import anchors
from attestcall.arm.formats import cose, token
from attestcall.arm.verify.appraise import appraise_cca, clear_caches

ROUNDS = 21
PER_ROUND = 100
TARGET_RATIO = 1.3
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "arm"


def per_call(function: Callable[[], object]) -> float:
    return _per_call(function, ROUNDS, PER_ROUND)


def main() -> int:
    evidence = (DATA / "cca_token_draft_ffm_00.cbor").read_bytes()
    store = anchors.load(DATA / "fvp_test_cpak.pub.pem")
    assert store is not None
    decoded = token.decode(evidence)
    rak, cpak = decoded.realm_claims.rak, store.entries[0].key
    assert rak is not None
    checks = [(decoded.realm, rak), (decoded.platform, cpak)]
    prepared = [(cose.raw_to_der(m.signature, 48), m.to_be_signed(), k) for m, k in checks]

    def two_verifications() -> None:
        for signature, signed, key in prepared:
            key.verify(signature, signed, ec.ECDSA(cose.ES384.hash()))

    def cold() -> object:
        clear_caches()
        return appraise_cca(evidence, store)

    def warm() -> object:
        return appraise_cca(evidence, store)

    assert cold().problems == []  # type: ignore[attr-defined]
    per_call(two_verifications)  # warm up
    baseline = per_call(two_verifications)
    cold_time = per_call(cold)
    warm_time = per_call(warm)
    ratio = cold_time / baseline
    print(f"two ECDSA P-384 verifications : {baseline * 1e6:8.1f} us (median of {ROUNDS} rounds)")
    print(f"CCA appraisal, cold           : {cold_time * 1e6:8.1f} us, {ratio:.2f}x "
          f"(target <= {TARGET_RATIO}x){missed(ratio, TARGET_RATIO)}")
    print(f"CCA appraisal, warm           : {warm_time * 1e6:8.1f} us, "
          f"{warm_time / baseline:.2f}x (both signatures found checked: decoding only)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
