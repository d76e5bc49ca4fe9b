"""Per-quote cost of the simulated SGX machine against one ECDSA P-256 signature.

Run: ``python bench/bench_sgx_quote.py``. One quote is EREPORT (HKDF report key, AES-CMAC)
plus the quoting enclave's work (strict REPORT parse, MAC check, one ECDSA P-256 signature,
assembly). The baseline, one ECDSA P-256 signature over the same 432 signed bytes, is
measured in the same run; both are medians over repeated rounds. Target: ratio <= 4.
The state lives in a temporary directory unless ATTESTCALL_HOME is set.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from timing import missed, private_home
from timing import per_call as _per_call

ROUNDS = 21
PER_ROUND = 200
TARGET_RATIO = 4.0


def per_call(function: Callable[[], object]) -> float:
    """Median seconds per call over ROUNDS rounds of PER_ROUND calls."""
    return _per_call(function, ROUNDS, PER_ROUND)


def main() -> int:
    private_home()
    from attestcall.intel.sim.sgx import EnclaveIdentity, QuotingEnclave, SimulatedCpu, load_state

    state = load_state()
    cpu = SimulatedCpu(state)
    qe = QuotingEnclave(state)
    identity = EnclaveIdentity.for_payload(b"bench payload", state)
    target = qe.target_info()
    nonce = bytes(range(64))

    def one_quote() -> bytes:
        return qe.quote(cpu.ereport(target, nonce, identity))

    key = ec.generate_private_key(ec.SECP256R1())
    message = bytes(432)

    def one_signature() -> bytes:
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    from attestcall.abi import BufferMemory, get_attestation
    from attestcall.keep.platforms import open_keep

    keep = open_keep("sgx-sim", b"bench payload")
    memory = BufferMemory(bytearray(64 + qe.quote_size()))
    memory.write(memory.base, nonce)

    def through_keep() -> int:
        # what a payload's call costs: size query and quote, shim <-> block <-> host thread
        size = get_attestation(0, 0, 0, 0, memory=memory, source=keep.source).ret
        return get_attestation(memory.base, 64, memory.base + 64, size, memory=memory,
                               source=keep.source).ret

    assert len(one_quote()) == qe.quote_size() == through_keep()
    per_call(one_signature)  # warm up
    signature = per_call(one_signature)
    quote = per_call(one_quote)
    keep_call = per_call(through_keep)
    keep.close()
    ratio = quote / signature
    print(f"ECDSA P-256 signature : {signature * 1e6:8.1f} us (median of {ROUNDS} rounds)")
    print(f"simulated SGX quote   : {quote * 1e6:8.1f} us (EREPORT + QE, {qe.quote_size()} B)")
    print(f"ratio                 : {ratio:8.2f}x (target <= {TARGET_RATIO:.0f}x)"
          f"{missed(ratio, TARGET_RATIO)}")
    print(f"through the keep      : {keep_call * 1e6:8.1f} us, {keep_call / signature:.2f}x "
          "(size query + call: shim, request block, host process, QE)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
