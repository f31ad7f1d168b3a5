;; Example policy, written by hand in WAT from policy-sdk/ABI.md alone.
;;
;; Rule: a status must be answered by a strict majority of the *configured* ELs, not just of
;; those that answered, so one live EL can never decide alone.
;;   - INVALID (with INVALID_BLOCK_HASH) from a majority of configured ELs → Follow it (reason 2)
;;   - any other INVALID → Syncing (reason 12)
;;   - VALID from a majority of configured ELs → Follow the first VALID (reason 1)
;;   - otherwise → Syncing (reason 11)
;; Votes from do-not-use nodes and votes without an answer are not counted. Waits until FINAL.
;; Strict about missing ELs by construction: a vote eb cut (outcome 5: the EL was down, hung or
;; past the straggler deadline) and a pending record (outcome 6) carry no status, so they count
;; against the majority of the configured ELs instead of being ignored.
;; Try it: eb policy check policies/examples/majority-of-configured.wat
(module
  (memory (export "memory") 1)
  ;; The input buffer: 8 KiB at address 1024 (header 32 bytes, then records, then config).
  (global $buf i32 (i32.const 1024))
  (func (export "eb_abi_version") (result i32) (i32.const 0x10001)) ;; ABI 1.1
  (func (export "eb_input_ptr") (result i32) (global.get $buf))
  (func (export "eb_input_cap") (result i32) (i32.const 8192))

  (func (export "eb_decide") (param $len i32) (result i64)
    (local $n i32) (local $size i32) (local $i i32) (local $rec i32) (local $status i32)
    (local $valid i32) (local $invalid i32) (local $first_valid i32) (local $first_invalid i32)
    (local $need i32)
    ;; Not FINAL (header flags bit 0) and votes still pending (header u16 at 8): Wait.
    (if (i32.and
          (i32.eqz (i32.and (i32.load8_u offset=10 (global.get $buf)) (i32.const 1)))
          (i32.ne (i32.load16_u offset=8 (global.get $buf)) (i32.const 0)))
      (then (return (i64.const 0))))
    (local.set $n (i32.load16_u offset=6 (global.get $buf)))     ;; n_votes
    (local.set $size (i32.load8_u offset=11 (global.get $buf)))  ;; record_size (read, never assume 32)
    (local.set $first_valid (i32.const -1))
    (local.set $first_invalid (i32.const -1))
    (local.set $rec (i32.add (global.get $buf) (i32.const 32)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; Counted: outcome 0 (answered) and flag bit 2 (do-not-use) clear.
        (if (i32.and
              (i32.eqz (i32.load8_u offset=3 (local.get $rec)))
              (i32.eqz (i32.and (i32.load8_u offset=4 (local.get $rec)) (i32.const 4))))
          (then
            (local.set $status (i32.load8_u offset=2 (local.get $rec)))
            (if (i32.eq (local.get $status) (i32.const 1)) ;; VALID
              (then
                (local.set $valid (i32.add (local.get $valid) (i32.const 1)))
                (if (i32.lt_s (local.get $first_valid) (i32.const 0))
                  (then (local.set $first_valid (local.get $i))))))
            (if (i32.or (i32.eq (local.get $status) (i32.const 2))  ;; INVALID
                        (i32.eq (local.get $status) (i32.const 5))) ;; INVALID_BLOCK_HASH
              (then
                (local.set $invalid (i32.add (local.get $invalid) (i32.const 1)))
                (if (i32.lt_s (local.get $first_invalid) (i32.const 0))
                  (then (local.set $first_invalid (local.get $i))))))))
        (local.set $rec (i32.add (local.get $rec) (local.get $size)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; need = nodes_configured / 2 + 1
    (local.set $need
      (i32.add (i32.shr_u (i32.load16_u offset=4 (global.get $buf)) (i32.const 1)) (i32.const 1)))
    (if (i32.ge_u (local.get $invalid) (local.get $need))
      (then (return (call $follow (local.get $first_invalid) (i64.const 2)))))
    (if (i32.gt_u (local.get $invalid) (i32.const 0))
      (then (return (i64.const 0xC00000002))))  ;; Syncing (action 2), reason 12
    (if (i32.ge_u (local.get $valid) (local.get $need))
      (then (return (call $follow (local.get $first_valid) (i64.const 1)))))
    (i64.const 0xB00000002))                    ;; Syncing, reason 11

  ;; Follow verdict: action 1 in bits 0-7, vote index in bits 16-31, reason in bits 32-63.
  (func $follow (param $vote i32) (param $reason i64) (result i64)
    (i64.or
      (i64.or (i64.const 1) (i64.shl (i64.extend_i32_u (local.get $vote)) (i64.const 16)))
      (i64.shl (local.get $reason) (i64.const 32)))))
