//! Integration tests of the server: real TCP, real SQLite files, real local receivers.

mod auth;
mod bad_input;
mod end_to_end;
mod me;
mod openapi;
mod support;
