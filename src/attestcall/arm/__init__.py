"""Arm's Confidential Compute Architecture (technology 5): the CCA attestation token.

``formats/`` decodes and encodes the token (the CBOR collection of the platform and the
realm COSE_Sign1 tokens, no I/O); ``fetch/`` the trust anchor the user supplies (the
platform key, CPAK); ``verify/`` the signatures and the binding; ``validate.py`` the
``[cca]`` policy table; ``cca.py`` the plugin record. See docs/design.md, "Adding a TEE".
"""
