//! Logging through the host's `host.log` import (rate-limited and tagged with
//! the pool and policy digest by the host).

use crate::LogLevel;

/// Log `message` at `level` through the host. On a native build (unit tests)
/// the record is kept in a per-thread buffer that `take_logs()` returns.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::glue::host_log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    native::CAPTURED.with(|c| c.borrow_mut().push((level, message.to_string())));
}

/// The records logged on this thread so far, emptying the buffer (native
/// builds only: for asserting what a policy logs in unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn take_logs() -> Vec<(LogLevel, String)> {
    native::CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;

    thread_local! {
        pub(super) static CAPTURED: RefCell<Vec<(crate::LogLevel, String)>> = const { RefCell::new(Vec::new()) };
    }
}

/// `log!(level, "format {}", args...)`: format and [`log()`](crate::log()) through the host.
///
/// ```
/// use afxdp_policy_sdk::{log, LogLevel};
/// log!(LogLevel::Warn, "device {} has {} queues", "eth0", 1);
/// ```
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}
