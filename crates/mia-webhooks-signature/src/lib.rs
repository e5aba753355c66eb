#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod replay;
mod signature;
mod verify;

pub use replay::{ReplayError, ReplayGuard, ReplayPolicy};
pub use signature::{HEADER_NAME, Signature, sign};
pub use verify::{Verifier, VerifyError, verify, verify_signature};
