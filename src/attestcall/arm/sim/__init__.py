"""A simulated Arm CCA machine: the platform security processor (HES) with its CPAK, and
the RMM with its RAK, answering a realm's RSI_ATTESTATION_TOKEN_INIT / _CONTINUE calls.

One concept a module:

- :mod:`.state`: the simulated platform under ``sim_home()/cca`` (CPAK, RAK, implementation
  and instance ids, software components, lifecycle) and its trust-anchor store.
- :mod:`.token`: the realm's claims (RIM from the payload, REMs, personalization value) and
  the platform's, signed into the CCA attestation token (tag 907 or the legacy 399 form).
- :mod:`.rmm`: :class:`SimulatedRmm`, the RSI attestation calls as the RMM answers them.
- :mod:`.keep`: the cca-sim keep: the realm's shim and the RMM behind the request block.

Its state is the ``cca`` folder of the simulated-platform home (the CCA record's
``sim_state``).
"""
