//! Black-box tests: the real app on an ephemeral port, on SQLite and on
//! PostgreSQL. One binary (STYLE §6); each test is isolated.

mod helpers;

mod authorize;
mod cimd;
mod cli;
mod discovery;
mod durability;
mod exchange;
mod hardening;
mod keys;
mod register;
mod restart;
mod rs;
mod scale;
mod store;
mod token;
