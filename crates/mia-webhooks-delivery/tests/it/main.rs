//! Integration tests of mia-webhooks-delivery against real listeners on 127.0.0.1 and ::1.

mod guard;
mod proxy;
mod sender;
mod support;
mod tls;
mod worker;
