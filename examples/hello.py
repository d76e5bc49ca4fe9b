"""A Python payload: ask the keep for evidence bound to a nonce and show what came back.

    attestcall run --tee sgx-sim python3 examples/hello.py
"""

import hashlib
import sys

from attestcall.guest import NotInKeepError, get_attestation, technology_name

# SGX quote v3: 48-byte header, then the 384-byte report body whose last 64 bytes are
# REPORTDATA (offset 48 + 320).
SGX_REPORTDATA = slice(368, 432)


def main() -> int:
    nonce = hashlib.sha512(b"hello from the payload").digest()
    try:
        technology, evidence = get_attestation(nonce)
    except NotInKeepError:
        print("not running in a keep: try  attestcall run --tee sgx-sim python3 " + sys.argv[0])
        return 1
    print(f"technology: {technology} ({technology_name(technology)})")
    print(f"evidence:   {len(evidence)} bytes")
    if technology == 2:
        reportdata = evidence[SGX_REPORTDATA]
        print(f"REPORTDATA: {reportdata.hex()}")
        print(f"nonce bound: {reportdata == nonce}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
