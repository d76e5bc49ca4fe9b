;; Imports get_attestation but exports no linear memory.
(module
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (memory 1)
  (func (export "_start"))
  (func (export "call")
    (param $nonce_ptr i32) (param $nonce_len i32) (param $buf_ptr i32) (param $buf_len i32)
    (param $technology_ptr i32) (result i32)
    (call $get_attestation
      (local.get $nonce_ptr) (local.get $nonce_len) (local.get $buf_ptr) (local.get $buf_len)
      (local.get $technology_ptr)))
)
