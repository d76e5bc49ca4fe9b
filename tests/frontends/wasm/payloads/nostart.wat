;; A valid module with nothing to run.
(module
  (memory (export "memory") 1)
  (func (export "main"))
)
