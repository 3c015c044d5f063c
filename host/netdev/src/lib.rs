//! Host network devices.

mod netdev;
pub use netdev::{LinkState, NetDev};
