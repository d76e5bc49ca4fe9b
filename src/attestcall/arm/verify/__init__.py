"""CCA token appraisal: signatures, binding, trust anchors -> Appraisal (:mod:`.appraise`)."""
