//! End-to-end scenarios, one module each, against real databases and real TLS.

mod adversarial;
mod agent_delivery;
mod agent_resilience;
mod api;
mod bench_fleet;
mod bench_floors;
mod bench_staleness;
mod cli;
mod cli_data;
mod cli_ops;
mod dashboard;
mod delivery;
mod faults;
mod identity;
mod metadata;
mod metrics;
mod monitoring;
mod objects;
mod openapi;
mod partition;
mod retention;
mod rotation;
mod sources;
mod staleness;
mod status;
mod webhooks;
