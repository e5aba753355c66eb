//! Proof under faults (issue 7), with real processes: the server is killed with SIGKILL under
//! load, its receiver goes away, its PostgreSQL connection is cut, and it is soaked with
//! deliveries to a dead endpoint. One test binary; its tests run one at a time (see
//! [`support::exclusive`]).

#[path = "../common/mod.rs"]
mod common;
mod crash;
mod database_outage;
mod receiver_outage;
mod soak;
mod support;
