//! Integration tests of the public API: known-answer vectors and property laws.

mod laws;
mod vectors;
