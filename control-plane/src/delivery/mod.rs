//! Delivery: issuing each node's next bundle ([`issue`]), serving it with the live
//! metadata ([`current`]), holding agents' long-polls
//! until their version changes ([`waiters`]), and waking polls across replicas
//! ([`notify`]), the agent API's in-memory view of each node ([`nodecache`]),
//! liveness from held connections ([`presence`]), a cap on polls held per node
//! ([`polls`]), group-committed acks ([`acks`]) and
//! certificates signed in batches before their transaction ([`batch`]), and the
//! service-level part of bundles kept in memory ([`servicecache`]).
//! The HTTP handlers in `http::delivery` and the jobs in `jobs` use these;
//! a held poll never holds a database connection.

pub mod acks;
pub mod batch;
pub mod current;
pub mod issue;
pub mod nodecache;
pub mod notify;
pub mod polls;
pub mod presence;
pub mod servicecache;
pub mod waiters;

pub use current::{CurrentError, Serve};
pub use issue::{IssueError, Issuer};
pub use nodecache::NodeAuth;
pub use notify::Changes;
pub use presence::Presence;
pub use waiters::Waiters;
