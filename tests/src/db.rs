//! A database per test: a new PostgreSQL database (dropped afterwards) or an SQLite
//! file in the control plane's data directory. Also raw reads for assertions.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub struct TestDb {
    pub backend: Backend,
    /// PostgreSQL URL of this test's database.
    pub url: Option<String>,
    admin_url: Option<String>,
    name: String,
    /// The SQLite file (inside the control plane's data dir).
    pub sqlite_path: Option<PathBuf>,
}

fn admin_url() -> String {
    std::env::var("FERRY_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("FERRY_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL")
    })
}

impl TestDb {
    pub fn new(backend: Backend, data_dir: &std::path::Path) -> Self {
        match backend {
            Backend::Postgres => Self::on_server(admin_url()),
            Backend::Sqlite => Self {
                backend,
                url: None,
                admin_url: None,
                name: format!("ferry_test_{}", hex::encode(rand_bytes())),
                sqlite_path: Some(data_dir.join("ferry.db")),
            },
        }
    }

    /// A new database on the PostgreSQL server of `admin` (a URL to its `postgres`
    /// database), e.g. a [`crate::pg_cluster::PgCluster`] of the test's own.
    pub fn on_server(admin: String) -> Self {
        let name = format!("ferry_test_{}", hex::encode(rand_bytes()));
        let mut c = PgConnection::establish(&admin).expect("connect to the test PostgreSQL");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("the PostgreSQL URL {admin} has no database part"),
        };
        Self {
            backend: Backend::Postgres,
            url: Some(url),
            admin_url: Some(admin),
            name,
            sqlite_path: None,
        }
    }

    fn with_conn<T>(
        &self,
        pg: impl FnOnce(&mut PgConnection) -> T,
        lite: impl FnOnce(&mut SqliteConnection) -> T,
    ) -> T {
        match self.backend {
            Backend::Postgres => pg(&mut PgConnection::establish(
                self.url.as_deref().expect("pg url"),
            )
            .expect("connect")),
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(
                    &self
                        .sqlite_path
                        .as_ref()
                        .expect("sqlite path")
                        .to_string_lossy(),
                )
                .expect("open sqlite");
                // The control plane writes the same file meanwhile: wait for its lock
                // as its own connections do, instead of failing with "database is
                // locked" (a flaky test otherwise).
                c.batch_execute("PRAGMA busy_timeout = 10000;")
                    .expect("busy timeout");
                lite(&mut c)
            }
        }
    }

    /// Row count of every table, to prove a refused request changed nothing.
    pub fn row_counts(&self) -> Vec<(String, i64)> {
        const TABLES: &[&str] = &[
            "tenants",
            "api_tokens",
            "cas",
            "services",
            "join_tokens",
            "nodes",
            "audit_log",
        ];
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        TABLES
            .iter()
            .map(|t| {
                let q = format!("SELECT COUNT(*) AS n FROM {t}");
                let n = self.with_conn(
                    |c| diesel::sql_query(&q).get_result::<Count>(c),
                    |c| diesel::sql_query(&q).get_result::<Count>(c),
                );
                ((*t).to_owned(), n.expect("count rows").n)
            })
            .collect()
    }

    /// Join-token uses, by token row, to prove a refused enrollment spent nothing.
    pub fn join_token_uses(&self) -> Vec<i64> {
        #[derive(QueryableByName)]
        struct Uses {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let q = "SELECT CAST(uses AS BIGINT) AS n FROM join_tokens ORDER BY id";
        self.with_conn(
            |c| diesel::sql_query(q).load::<Uses>(c),
            |c| diesel::sql_query(q).load::<Uses>(c),
        )
        .expect("read join tokens")
        .into_iter()
        .map(|u| u.n)
        .collect()
    }

    /// The raw sealed key column of a node's bundle (`None`: no key stored).
    pub fn raw_bundle_key(&self, service: &str, node: &str) -> Option<Vec<u8>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<Binary>)]
            key_sealed: Option<Vec<u8>>,
        }
        let q = format!(
            "SELECT key_sealed FROM bundles WHERE service = '{service}' AND node_id = '{node}'"
        );
        self.with_conn(
            |c| diesel::sql_query(&q).get_result::<Row>(c),
            |c| diesel::sql_query(&q).get_result::<Row>(c),
        )
        .expect("read bundle row")
        .key_sealed
    }

    /// The raw stored CA row: (certificate PEM, sealed key bytes, key id).
    pub fn raw_ca_row(&self) -> (String, Vec<u8>, String) {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            cert_pem: String,
            #[diesel(sql_type = Binary)]
            key_ciphertext: Vec<u8>,
            #[diesel(sql_type = Text)]
            key_id: String,
        }
        let q = "SELECT cert_pem, key_ciphertext, key_id FROM cas";
        let rows = self
            .with_conn(
                |c| diesel::sql_query(q).load::<Row>(c),
                |c| diesel::sql_query(q).load::<Row>(c),
            )
            .expect("read cas");
        assert_eq!(rows.len(), 1, "exactly one CA row");
        let r = rows.into_iter().next().expect("one row");
        (r.cert_pem, r.key_ciphertext, r.key_id)
    }

    /// Runs one statement written for both backends (to put a row into a state no API
    /// reaches quickly, e.g. a certificate about to expire).
    pub fn execute(&self, sql: &str) {
        self.with_conn(
            |c| diesel::sql_query(sql).execute(c),
            |c| diesel::sql_query(sql).execute(c),
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The single BIGINT column `n` of one row of `sql`.
    pub fn scalar(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        self.with_conn(
            |c| diesel::sql_query(sql).get_result::<N>(c),
            |c| diesel::sql_query(sql).get_result::<N>(c),
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(admin) = &self.admin_url
            && let Ok(mut c) = PgConnection::establish(admin)
        {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn rand_bytes() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish().to_le_bytes()
}
