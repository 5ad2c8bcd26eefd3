//! Delivery: issuing each node's next bundle ([`issue`]), serving it with the live
//! metadata ([`current`]), holding agents' long-polls
//! until their version changes ([`waiters`]), and waking polls across replicas
//! ([`notify`]). The HTTP handlers in `http::delivery` and the jobs in `jobs` use these;
//! a held poll never holds a database connection.

pub mod current;
pub mod issue;
pub mod notify;
pub mod waiters;

pub use current::{CurrentError, Serve};
pub use issue::{IssueError, Issuer};
pub use notify::Changes;
pub use waiters::Waiters;
