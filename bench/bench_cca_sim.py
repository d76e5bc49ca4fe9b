"""Per-call cost of get_attestation under cca-sim against one ECDSA P-384 signature.

Run: ``python bench/bench_cca_sim.py [907|399]`` (the token's form, default 907). Measured
in the same run, medians over repeated rounds:

- the baseline: one ES384 signature (ECDSA P-384) over a realm token's Sig_structure;
- the simulated RMM in process: a realm token (claims encoded, one ES384 signature) in the
  collection with the platform token the HES signed once;
- one bare shim <-> RMM exchange (RSI_ATTESTATION_TOKEN_INIT: doorbell pipe, RMM process
  wakes, answers, wakes the shim);
- through the keep (``open_keep("cca-sim")`` + ``abi.get_attestation`` on a BufferMemory):
  one real call (INIT, then CONTINUE until the token is out: one exchange signs, one or two
  copy) and a size query plus a call (the size is kept after the first token).

Target: ratio <= 3 for the simulator and for one call through the keep. Exit status 1 if
either misses it. The state lives in a temporary directory unless ATTESTCALL_HOME is set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from timing import contract_calls, missed, private_home
from timing import per_call as _per_call

ROUNDS = 21
PER_ROUND = 100
TARGET_RATIO = 3.0


def per_call(function: Callable[[], object]) -> float:
    """Median seconds per call over ROUNDS rounds of PER_ROUND calls."""
    return _per_call(function, ROUNDS, PER_ROUND)


def main(argv: list[str]) -> int:
    form = int(argv[0]) if argv else 907
    private_home()
    from attestcall.arm.formats import cose
    from attestcall.arm.sim import rmm as rsi
    from attestcall.arm.sim import token as tok
    from attestcall.arm.sim.keep import Op
    from attestcall.arm.sim.state import load_state
    from attestcall.keep.platforms import open_keep

    state = load_state()
    identity = tok.RealmIdentity.for_payload(b"bench payload")
    machine = rsi.SimulatedRmm(state, identity, form)
    machine.platform_token()
    nonce = bytes(range(64))
    payload = bytes(420)  # about a realm token's claims

    def one_signature() -> bytes:
        return cose.sign1(state.rak, cose.ES384, payload)

    def in_process() -> bytes:
        return machine._build(nonce)

    keep = open_keep("cca-sim", b"bench payload", token_format=form)
    source = keep.source
    size = source.evidence_size()
    one_call, size_query_and_call = contract_calls(source, nonce, size)

    def exchange() -> bytes:
        return source.channel.call(Op.RSI_TOKEN_INIT, nonce, 16)  # type: ignore[attr-defined]

    assert len(in_process()) == size == one_call() == size_query_and_call()
    try:
        per_call(one_signature)  # warm up
        signature = per_call(one_signature)
        t_sim, t_exchange = per_call(in_process), per_call(exchange)
        t_call, t_both = per_call(one_call), per_call(size_query_and_call)
    finally:
        keep.close()
    ratio = t_sim / signature

    def line(label: str, seconds: float, note: str = "") -> None:
        print(f"{label:<30}: {seconds * 1e6:8.1f} us  {seconds / signature:5.2f}x  {note}")

    print(f"cca-sim, tag {form} ({size} B); medians of {ROUNDS} rounds of {PER_ROUND}")
    line("ES384 signature (COSE_Sign1)", signature, "(the baseline)")
    line("simulated RMM in process", t_sim,
         f"(realm token + collection; target <= {TARGET_RATIO:.0f}x){missed(ratio, TARGET_RATIO)}")
    line("one shim<->RMM exchange", t_exchange, "(pipe wake-ups, RMM process)")
    line("keep: one call", t_call, "(INIT + CONTINUEs; the size is kept; target <= "
         f"{TARGET_RATIO:.0f}x){missed(t_call / signature, TARGET_RATIO)}")
    line("keep: size query + call", t_both, "(the size query asks nothing)")
    overhead = t_call - t_sim
    print(f"where the time of one call goes: RMM {t_sim * 1e6:.0f} us, exchanges and copies "
          f"{overhead * 1e6:.0f} us (~{overhead / t_exchange:.1f} bare exchanges)")
    return 0 if max(ratio, t_call / signature) <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
