//! afxdp-cni: the CNI plugin of afxdp-rs (spec 1.1).
//!
//! ADD moves the allocated netdev into the pod netns **without renaming it** and
//! brings it up; DEL moves it back and tells afxdp-dp to release it (idempotent:
//! a second DEL, a DEL after the netns is gone, and a DEL with afxdp-dp down all
//! succeed); CHECK verifies the device is where ADD put it; VERSION and STATUS
//! answer as the spec says. Errors are spec JSON on stdout.

pub mod command;
pub mod config;
pub mod error;
pub mod filters;
pub mod ipam;
pub mod node;
pub mod result;
