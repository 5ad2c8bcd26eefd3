//! Shared pieces of Ferry's fuzz targets (`fuzz_targets/`): the fixed clock and names
//! the fixtures were made with, the fixtures themselves ([`fixtures`]), and
//! [`material::Material`], the structured description of a PEM field that lets the
//! fuzzer start from real certificates, keys and CSRs and edit their DER.
//!
//! `agent_bundle` and `ca_csr` inputs start with a mode byte: even, the rest is the raw
//! input the production code receives (a poll body, an enroll body); odd, the rest is decoded with
//! `arbitrary` into a structured case that reaches the checks behind the first gate
//! (the content hash, the CSR's key type). The committed seeds under `corpus/` and the
//! fixtures under `fixtures/` are written by `examples/seeds.rs`.
#![forbid(unsafe_code)]

pub mod der;
pub mod fixtures;
pub mod material;

use time::OffsetDateTime;
use time::macros::datetime;

/// The instant every fixture was issued at; targets put the server clock around it.
pub const FIXTURE_TIME: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
/// The trust domain of the fixtures' CA.
pub const TRUST_DOMAIN: &str = "ferry.local";
/// The service and node the fixtures were issued for.
pub const SERVICE: &str = "web";
pub const NODE: &str = "node-1";
/// The control plane's default SAN template.
pub const DEFAULT_SAN_TEMPLATE: &str = "{node}.{service}.{trust_domain}";

/// Splits a fuzz input into its mode and the rest: `Some(rest)` for the raw mode (even
/// first byte), `None` (with the rest in `Err`) for the structured one.
pub fn split_mode(data: &[u8]) -> Option<Result<&[u8], &[u8]>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode % 2 == 0 { Ok(rest) } else { Err(rest) })
}

/// `FIXTURE_TIME` moved by `seconds` (an `i32` keeps it well inside `time`'s range).
pub fn fixture_time_plus(seconds: i32) -> OffsetDateTime {
    FIXTURE_TIME + time::Duration::seconds(i64::from(seconds))
}
