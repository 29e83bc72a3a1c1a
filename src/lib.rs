//! contactsd: a self-hosted organization contacts directory speaking the WeSurvey Open API.
//!
//! Layers, each depending only on the ones before it:
//! [`domain`] (types and rules, no I/O) → [`store`] (storage traits and backends) →
//! [`service`] (the operations, caches and limits) → [`http`] (routing, envelope, error
//! mapping) → [`cli`] (settings, commands, start-up).

#![forbid(unsafe_code)]

pub mod cli;
pub mod domain;
pub mod http;
pub mod service;
pub mod store;
