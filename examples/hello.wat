;; A WebAssembly payload: ask the keep for evidence bound to a nonce and print what came back.
;;
;;     attestcall run --tee sgx-sim examples/hello.wat
;;
;; Memory: 0..63 the nonce, 64 the technology (u32), 128 an iovec, 256.. text,
;; 1024.. decimal scratch, 4096.. the evidence.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "attestation" "get_attestation"
    (func $get_attestation (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "nonce from examples/hello.wat: the keep binds these 64 bytes....")
  (data (i32.const 256) "technology: ")       ;; 12 bytes at 256
  (data (i32.const 272) "evidence:   ")       ;; 12 bytes at 272
  (data (i32.const 288) " bytes\n")           ;; 7 bytes at 288
  (data (i32.const 296) "REPORTDATA: ")       ;; 12 bytes at 296
  (data (i32.const 312) "\n")                 ;; 1 byte at 312
  (data (i32.const 320) "get_attestation failed: errno ") ;; 30 bytes at 320
  (data (i32.const 360) "0123456789abcdef")   ;; hex digits at 360

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 128) (local.get $ptr))
    (i32.store (i32.const 132) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136))))

  ;; print an unsigned number in decimal
  (func $print_u32 (param $n i32) (local $p i32)
    (local.set $p (i32.const 1040))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $write (local.get $p) (i32.sub (i32.const 1040) (local.get $p))))

  ;; print $len bytes at $ptr as hex
  (func $print_hex (param $ptr i32) (param $len i32) (local $i i32) (local $b i32)
    (block $done
      (loop $bytes
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (i32.store8 (i32.const 1100)
          (i32.load8_u (i32.add (i32.const 360) (i32.shr_u (local.get $b) (i32.const 4)))))
        (i32.store8 (i32.const 1101)
          (i32.load8_u (i32.add (i32.const 360) (i32.and (local.get $b) (i32.const 15)))))
        (call $write (i32.const 1100) (i32.const 2))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $bytes))))

  (func $fail (param $ret i32)
    (call $write (i32.const 320) (i32.const 30))
    (call $print_u32 (i32.sub (i32.const 0) (local.get $ret)))
    (call $write (i32.const 312) (i32.const 1))
    (call $proc_exit (i32.const 1)))

  (func (export "_start") (local $size i32) (local $n i32)
    ;; size query: buf_ptr == 0
    (local.set $size
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 0) (i32.const 0) (i32.const 64)))
    (if (i32.lt_s (local.get $size) (i32.const 0)) (then (call $fail (local.get $size))))
    (local.set $n
      (call $get_attestation (i32.const 0) (i32.const 64) (i32.const 4096)
        (select (local.get $size) (i32.const 1) (local.get $size)) (i32.const 64)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (call $fail (local.get $n))))
    (call $write (i32.const 256) (i32.const 12))
    (call $print_u32 (i32.load (i32.const 64)))
    (call $write (i32.const 312) (i32.const 1))
    (call $write (i32.const 272) (i32.const 12))
    (call $print_u32 (local.get $n))
    (call $write (i32.const 288) (i32.const 7))
    ;; SGX (2): REPORTDATA is at offset 368 of the quote
    (if (i32.eq (i32.load (i32.const 64)) (i32.const 2))
      (then
        (call $write (i32.const 296) (i32.const 12))
        (call $print_hex (i32.const 4464) (i32.const 64))
        (call $write (i32.const 312) (i32.const 1))))))
