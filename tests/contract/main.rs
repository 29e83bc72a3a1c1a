//! HTTP integration tests: each test starts the real service on 127.0.0.1:0 with a fresh
//! database and talks to it as a client would.

mod foundation;
mod groups;
mod helpers;
mod members;
mod sync;
