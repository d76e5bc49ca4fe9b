"""The CCA token's structures, decoded and encoded without I/O: COSE_Sign1 and COSE_Key
(:mod:`.cose`), the collection and both claim sets (:mod:`.token`), ``show``
(:mod:`.describe`)."""
