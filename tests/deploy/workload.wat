;; The deployment tests' workload: greets on stdout, asks the keep for evidence itself
;; (size query, then the call), prints "technology: N" and the evidence size, writes a line
;; to stderr, and exits with 40 + the technology id (20 if get_attestation failed).
;;
;; Memory: 0..63 nonce, 64 technology (u32), 128 iovec, 136 written, 256.. text,
;; 1024.. decimal scratch, 4096.. evidence.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "the workload's own nonce: 64 bytes bound into its own evidence..")
  (data (i32.const 256) "hello from the keep\n")   ;; 20 bytes
  (data (i32.const 288) "technology: ")            ;; 12 bytes
  (data (i32.const 304) "evidence: ")              ;; 10 bytes
  (data (i32.const 320) " bytes\n")                ;; 7 bytes
  (data (i32.const 336) "\n")
  (data (i32.const 352) "a line on stderr\n")      ;; 17 bytes

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 128) (local.get $ptr))
    (i32.store (i32.const 132) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 136))))

  (func $print_u32 (param $n i32) (local $p i32)
    (local.set $p (i32.const 1040))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $write (i32.const 1) (local.get $p) (i32.sub (i32.const 1040) (local.get $p))))

  (func (export "_start") (local $size i32) (local $n i32)
    (call $write (i32.const 1) (i32.const 256) (i32.const 20))
    (local.set $size
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 0) (i32.const 0)
                             (i32.const 64)))
    (if (i32.lt_s (local.get $size) (i32.const 0)) (then (call $proc_exit (i32.const 20))))
    (local.set $n
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 4096)
        (select (local.get $size) (i32.const 1) (local.get $size)) (i32.const 64)))
    (if (i32.ne (local.get $n) (local.get $size)) (then (call $proc_exit (i32.const 20))))
    (call $write (i32.const 1) (i32.const 288) (i32.const 12))
    (call $print_u32 (i32.load (i32.const 64)))
    (call $write (i32.const 1) (i32.const 336) (i32.const 1))
    (call $write (i32.const 1) (i32.const 304) (i32.const 10))
    (call $print_u32 (local.get $n))
    (call $write (i32.const 1) (i32.const 320) (i32.const 7))
    (call $write (i32.const 2) (i32.const 352) (i32.const 17))
    (call $proc_exit (i32.add (i32.const 40) (i32.load (i32.const 64))))))
