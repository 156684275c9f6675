//! The API suite, end to end over HTTP: a real Taxbridge server on port 0 with a fresh
//! database, once on SQLite and once on PostgreSQL for every test. One test binary, so the
//! harness is built once.

mod audit;
mod bad_input;
mod browser;
mod connections;
mod custody;
mod fleet;
mod identity;
mod imports;
mod pages;
mod pulls;
mod schema;
mod support;
mod transport;
mod uploads;
mod workspaces;
