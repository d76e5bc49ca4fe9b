"""Where the test suite's files are, for test modules at any depth."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"  # real-hardware vectors, each folder with its PROVENANCE.md
C = TESTS / "c"  # C payloads the keep tests compile
NATIVE_C = TESTS / "frontends" / "native" / "c"  # the native front end's test programs
WASM_PAYLOADS = TESTS / "frontends" / "wasm" / "payloads"
