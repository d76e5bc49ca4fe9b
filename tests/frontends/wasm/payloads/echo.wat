;; Prints its arguments, then its environment, one per line. With extra arguments it exits
;; through proc_exit(number of extra arguments); without, it returns from _start.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; 0 count, 4 string bytes, 8 iovec, 16 bytes written, 20 "\n"
  (data (i32.const 20) "\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 8) (local.get $ptr))
    (i32.store (i32.const 12) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16))))
  (func $strlen (param $s i32) (result i32) (local $n i32)
    (block $end
      (loop $next
        (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $s) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  ;; Fresh memory for `count` pointers and `bytes` of strings: returns where it starts.
  (func $room (param $count i32) (param $bytes i32) (result i32)
    (i32.shl
      (memory.grow
        (i32.add (i32.const 1)
          (i32.shr_u (i32.add (i32.shl (local.get $count) (i32.const 2)) (local.get $bytes))
                     (i32.const 16))))
      (i32.const 16)))
  (func $print_lines (param $pointers i32) (param $count i32) (local $i i32) (local $s i32)
    (block $end
      (loop $next
        (br_if $end (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $s
          (i32.load (i32.add (local.get $pointers) (i32.shl (local.get $i) (i32.const 2)))))
        (call $write (local.get $s) (call $strlen (local.get $s)))
        (call $write (i32.const 20) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  (func (export "_start") (local $argc i32) (local $base i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (local.set $argc (i32.load (i32.const 0)))
    (local.set $base (call $room (local.get $argc) (i32.load (i32.const 4))))
    (drop (call $args_get (local.get $base)
                          (i32.add (local.get $base) (i32.shl (local.get $argc) (i32.const 2)))))
    (call $print_lines (local.get $base) (local.get $argc))
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (local.set $base (call $room (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (drop (call $environ_get (local.get $base)
                             (i32.add (local.get $base)
                                      (i32.shl (i32.load (i32.const 0)) (i32.const 2)))))
    (call $print_lines (local.get $base) (i32.load (i32.const 0)))
    (if (i32.gt_u (local.get $argc) (i32.const 1))
      (then (call $proc_exit (i32.sub (local.get $argc) (i32.const 1))))))
)
