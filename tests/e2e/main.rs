//! End-to-end scenarios, one module each, against real databases and real TLS.

mod api;
mod cli;
mod delivery;
mod identity;
mod rotation;
