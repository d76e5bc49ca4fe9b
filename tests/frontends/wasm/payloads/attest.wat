;; A complete payload: size query, then the call, then the evidence on stdout. Exits with
;; the technology id; 100 if the size query fails, 101 if the call fails.
(module
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; 0x10 technology, 0x20 iovec, 0x30 bytes written, 0x100 nonce, 0x1000 evidence
  (data (i32.const 0x100) "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
  (func (export "_start") (local $size i32) (local $got i32)
    (local.set $size
      (call $get_attestation (i32.const 0x100) (i32.const 64) (i32.const 0) (i32.const 0)
                             (i32.const 0x10)))
    (if (i32.lt_s (local.get $size) (i32.const 0)) (then (call $proc_exit (i32.const 100))))
    (local.set $got
      (call $get_attestation (i32.const 0x100) (i32.const 64) (i32.const 0x1000)
                             (local.get $size) (i32.const 0x10)))
    (if (i32.ne (local.get $got) (local.get $size)) (then (call $proc_exit (i32.const 101))))
    (i32.store (i32.const 0x20) (i32.const 0x1000))
    (i32.store (i32.const 0x24) (local.get $got))
    (drop (call $fd_write (i32.const 1) (i32.const 0x20) (i32.const 1) (i32.const 0x30)))
    (call $proc_exit (i32.load (i32.const 0x10))))
)
