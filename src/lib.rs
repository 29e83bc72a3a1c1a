//! contactsd: a self-hosted organization contacts directory speaking the WeSurvey Open API.
//!
//! Layers, each depending only on the ones before it:
//! [`domain`] (types and rules, no I/O) → [`store`] (storage traits and backends) →
//! [`service`] (the operations, caches and limits) → [`http`] (routing, envelope, error
//! mapping) → [`cli`] (settings, commands, start-up).
//!
//! Beside them: [`snapshot`] (the snapshot formats and their limits: bytes to a
//! [`domain::sync::Snapshot`]; depends on [`domain`] only, used by [`http`] and [`cli`]) and
//! [`telemetry`] (logging; used by [`cli`]) and [`metrics`] (counters and their exposition;
//! depends on nothing of the crate, recorded by [`service`] and [`http`]).

#![forbid(unsafe_code)]
// These docs are a maintainer's map: they are built with `--document-private-items` (see
// docs/DESIGN.md), so a link to a private item is a link that works.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cli;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod telemetry;
