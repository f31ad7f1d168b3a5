//! The module exports a policy needs, written by [`export_policy!`](crate::export_policy).
//!
//! The input buffer is a static inside the module; the host writes each ballot there and calls
//! `eb_decide(len)`. Every decision runs in a fresh instance, so nothing a policy keeps in
//! statics survives from one decision to the next.

#![allow(unsafe_code)] // the one static buffer the host writes into

use crate::abi::{Verdict, MIN_INPUT_CAP, REASON_SDK_BAD_INPUT};
use crate::Input;
use core::cell::UnsafeCell;

/// Bytes reserved for one input: the header, 64 vote records and up to 6 KiB of config.
const INPUT_CAP: usize = 8192;
const _: () = assert!(INPUT_CAP >= MIN_INPUT_CAP + 1024);

#[repr(C, align(8))]
struct InputBuffer(UnsafeCell<[u8; INPUT_CAP]>);

// SAFETY: a wasm32 policy instance is single-threaded and used for one call at a time; natively
// the buffer is only touched through the same single-threaded entry points.
unsafe impl Sync for InputBuffer {}

static INPUT: InputBuffer = InputBuffer(UnsafeCell::new([0; INPUT_CAP]));

/// Address of the input buffer, for `eb_input_ptr`.
pub fn input_ptr() -> i32 {
    INPUT.0.get() as usize as i32
}

/// Size of the input buffer, for `eb_input_cap`.
pub fn input_cap() -> i32 {
    INPUT_CAP as i32
}

fn with_input<R>(len: i32, f: impl FnOnce(Option<Input<'_>>) -> R) -> R {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: no reference into the buffer outlives this call, and the host only writes it
    // between calls.
    let buffer: &[u8; INPUT_CAP] = unsafe { &*INPUT.0.get() };
    f(buffer.get(..len).and_then(|bytes| Input::parse(bytes).ok()))
}

/// Body of `eb_decide`: parses the input and runs `decide`; unreadable input → `Syncing`.
pub fn decide_entry(len: i32, decide: fn(&Input<'_>) -> Verdict) -> i64 {
    with_input(len, |input| match input {
        Some(input) => decide(&input),
        None => Verdict::Syncing {
            reason: REASON_SDK_BAD_INPUT,
        },
    })
    .encode()
}

/// Body of `eb_configure`: the buffer holds the config string; 0 when `configure` accepts it.
pub fn configure_entry<E>(len: i32, configure: fn(&[u8]) -> Result<(), E>) -> i32 {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: as in `with_input`.
    let buffer: &[u8; INPUT_CAP] = unsafe { &*INPUT.0.get() };
    match buffer.get(..len).map(configure) {
        Some(Ok(())) => 0,
        _ => 1,
    }
}

/// Writes a policy module's exports from plain Rust functions.
///
/// ```ignore
/// fn decide(input: &policy_sdk::Input) -> policy_sdk::Verdict { /* … */ }
/// fn configure(config: &[u8]) -> Result<(), policy_sdk::rules::ConfigError> { /* … */ }
/// policy_sdk::export_policy!(decide, configure);
/// ```
///
/// `configure` is optional. The exports exist only when compiling for `wasm32`, so the same crate
/// can be used natively (as an `rlib`) by tests and fixture runners. On wasm32 without the `std`
/// feature the SDK also provides the panic handler (a panic traps, which the host turns into
/// `Syncing`).
#[macro_export]
macro_rules! export_policy {
    ($decide:path) => {
        $crate::export_policy!(@exports $decide);
    };
    ($decide:path, $configure:path) => {
        $crate::export_policy!(@exports $decide);
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn eb_configure(len: i32) -> i32 {
            $crate::__private::configure_entry(len, $configure)
        }
    };
    (@exports $decide:path) => {
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn eb_abi_version() -> i32 {
            $crate::abi::ABI_VERSION
        }
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn eb_input_ptr() -> i32 {
            $crate::__private::input_ptr()
        }
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn eb_input_cap() -> i32 {
            $crate::__private::input_cap()
        }
        #[cfg(target_arch = "wasm32")]
        #[no_mangle]
        pub extern "C" fn eb_decide(len: i32) -> i64 {
            $crate::__private::decide_entry(len, $decide)
        }
    };
}

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
