//! The datastore: PostgreSQL in production, an SQLite file as the embedded default.
//!
//! Every query is written once, in diesel's DSL, and compiled for both backends by
//! [`on_backend!`], which matches the connection and runs the same expression on the
//! concrete `PgConnection` or `SqliteConnection` (diesel's `MultiConnection` cannot
//! express upserts or row locks). Query functions live in one file per table and take
//! `&mut Conn`; callers run them through [`Store::read`] or [`Store::write`], which move
//! the blocking diesel call off the async runtime. Long waits never hold a connection.

pub mod acks;
pub mod alert_events;
pub mod alerts;
pub mod audit;
pub mod bundles;
pub mod ca;
pub mod dashboard;
pub mod deliveries;
pub mod join_tokens;
pub mod metadata;
pub mod metrics;
pub mod nodes;
pub mod objects;
pub mod presence;
pub mod retention;
pub mod rotations;
pub mod schema;
pub mod services;
pub mod source_fetches;
pub mod sources;
pub mod staleness;
pub mod status;
pub mod tenants;
pub mod tokens;

use diesel::connection::InstrumentationEvent;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Advisory lock key serialising migrations across replicas starting together.
const MIGRATION_LOCK_KEY: i64 = 0x6665_7272_7900_0001;

/// A connection of either backend, as handed to query functions.
pub enum Conn<'a> {
    Pg(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection, compiling it once per backend.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Pg(inner) => {
                let $c: &mut ::diesel::PgConnection = inner;
                $body
            }
            $crate::store::Conn::Sqlite(inner) => {
                let $c: &mut ::diesel::SqliteConnection = inner;
                $body
            }
        }
    };
}
pub use on_backend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("{0}")]
    Open(String),
    #[error("database task panicked or was cancelled")]
    Task,
}

#[derive(Clone)]
enum Backend {
    Pg(Pool<ConnectionManager<PgConnection>>),
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    statements: Arc<AtomicU64>,
}

/// Counts every statement a pooled connection starts (`ferry_db_statements_total`),
/// and sets SQLite's pragmas.
#[derive(Debug)]
struct Customizer {
    statements: Arc<AtomicU64>,
}

impl Customizer {
    fn count<C: Connection>(&self, conn: &mut C) {
        let n = self.statements.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { .. } = event {
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        self.count(conn);
        Ok(())
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Customizer {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)?;
        self.count(conn);
        Ok(())
    }
}

impl Store {
    /// Opens PostgreSQL at `url` (`postgres://...`), or the SQLite file at `sqlite_path`
    /// when no URL is given.
    pub fn open(url: Option<&str>, sqlite_path: &Path, pool_size: u32) -> Result<Self, StoreError> {
        let statements = Arc::new(AtomicU64::new(0));
        let customizer = || {
            Box::new(Customizer {
                statements: statements.clone(),
            })
        };
        let backend = match url {
            // No `SELECT 1` before every checkout (r2d2's default): it was one statement
            // in five on the agents' poll and ack paths. A connection that broke while
            // idle fails its next query instead, and r2d2 drops it (`has_broken`).
            Some(url) => Backend::Pg(
                Pool::builder()
                    .max_size(pool_size)
                    .test_on_check_out(false)
                    .connection_timeout(Duration::from_secs(10))
                    .connection_customizer(customizer())
                    .build(ConnectionManager::new(url))?,
            ),
            None => {
                // WAL is a property of the file: switch once, before the pool opens
                // several connections that would race for the lock it takes.
                let mut first = SqliteConnection::establish(&sqlite_path.to_string_lossy())
                    .map_err(|e| {
                        StoreError::Open(format!("cannot open {}: {e}", sqlite_path.display()))
                    })?;
                first.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
                Backend::Sqlite(
                    Pool::builder()
                        .max_size(pool_size.min(4))
                        .connection_timeout(Duration::from_secs(10))
                        .connection_customizer(customizer())
                        .build(ConnectionManager::new(sqlite_path.to_string_lossy()))?,
                )
            }
        };
        Ok(Self {
            backend,
            statements,
        })
    }

    /// Statements run through the pool since this replica started.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Pg(_) => "postgresql",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations; on PostgreSQL under an advisory lock so replicas
    /// starting together migrate once.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mig =
            |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
        match &self.backend {
            Backend::Pg(pool) => {
                let mut c = pool.get()?;
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(&mut c)?;
                let applied = c
                    .run_pending_migrations(PG_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(mig);
                diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .execute(&mut c)?;
                applied
            }
            Backend::Sqlite(pool) => {
                let mut c = pool.get()?;
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(mig)
            }
        }
    }

    /// (connections open, connections idle) of the pool, for `/metrics`.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = match &self.backend {
            Backend::Pg(p) => p.state(),
            Backend::Sqlite(p) => p.state(),
        };
        (s.connections, s.idle_connections)
    }

    /// True when the database answers and no migration is pending (`/readyz`).
    pub async fn ready(&self) -> bool {
        let this = self.clone();
        tokio::task::spawn_blocking(move || match &this.backend {
            Backend::Pg(pool) => pool
                .get()
                .ok()
                .and_then(|mut c| c.has_pending_migration(PG_MIGRATIONS).ok()),
            Backend::Sqlite(pool) => pool
                .get()
                .ok()
                .and_then(|mut c| c.has_pending_migration(SQLITE_MIGRATIONS).ok()),
        })
        .await
        .ok()
        .flatten()
            == Some(false)
    }

    /// Runs read-only queries outside an explicit transaction.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn<'_>) -> diesel::QueryResult<T> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || -> Result<T, StoreError> {
            match backend {
                Backend::Pg(pool) => Ok(f(&mut Conn::Pg(&mut *pool.get()?))?),
                Backend::Sqlite(pool) => Ok(f(&mut Conn::Sqlite(&mut *pool.get()?))?),
            }
        })
        .await
        .map_err(|_| StoreError::Task)?
    }

    /// Runs reads that must agree with each other in one read-only snapshot
    /// (`REPEATABLE READ` on PostgreSQL; a deferred transaction on SQLite).
    pub async fn snapshot<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || -> Result<T, E> {
            match backend {
                Backend::Pg(pool) => {
                    let mut pooled: PooledConnection<_> = pool.get().map_err(StoreError::from)?;
                    pooled
                        .build_transaction()
                        .repeatable_read()
                        .read_only()
                        .run(|c| f(&mut Conn::Pg(c)))
                }
                Backend::Sqlite(pool) => {
                    let mut pooled: PooledConnection<_> = pool.get().map_err(StoreError::from)?;
                    pooled.transaction(|c| f(&mut Conn::Sqlite(c)))
                }
            }
        })
        .await
        .map_err(|_| E::from(StoreError::Task))?
    }

    /// Runs `f` in one transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue on
    /// the busy timeout instead of failing on a lock upgrade). `f`'s error rolls back.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut Conn<'_>) -> Result<T, E> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || -> Result<T, E> {
            match backend {
                Backend::Pg(pool) => {
                    let mut pooled: PooledConnection<_> = pool.get().map_err(StoreError::from)?;
                    pooled.transaction(|c| f(&mut Conn::Pg(c)))
                }
                Backend::Sqlite(pool) => {
                    let mut pooled: PooledConnection<_> = pool.get().map_err(StoreError::from)?;
                    pooled.immediate_transaction(|c| f(&mut Conn::Sqlite(c)))
                }
            }
        })
        .await
        .map_err(|_| E::from(StoreError::Task))?
    }
}

/// Unix milliseconds, the store's time unit.
pub fn now_ms() -> i64 {
    ms(time::OffsetDateTime::now_utc())
}

pub fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(v: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(v as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// True when `e` is a unique-constraint violation (a name already taken).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
