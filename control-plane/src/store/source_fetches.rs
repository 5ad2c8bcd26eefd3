//! `source_fetches`: the fetch state of dynamic sources, one row per fetched URL (node
//! id '' for a service-scope source, one row per node otherwise; triggers on `nodes`
//! add and remove a node's rows). The fetch job reaches work only through the
//! `source_fetches_due` index, and claims it with a lease (`next_fetch_at` moved past
//! the fetch), so replicas split due rows instead of fetching them twice.

use super::schema::{nodes, source_fetches};
use super::sources::SourceRow;
use super::{Conn, on_backend};
use diesel::dsl::{count_star, max, min};
use diesel::prelude::*;

pub const CLOSED: &str = "closed";
pub const OPEN: &str = "open";
pub const HALF_OPEN: &str = "half-open";

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = source_fetches, treat_none_as_null = true)]
pub struct FetchRow {
    pub service: String,
    pub source: String,
    pub node_id: String,
    pub next_fetch_at: i64,
    pub etag: Option<String>,
    pub value_hash: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    /// Consecutive failures.
    pub failures: i32,
    /// [`CLOSED`], [`OPEN`] or [`HALF_OPEN`].
    pub circuit: String,
    /// Counted in a firing `source-failing` alert.
    pub alerting: bool,
}

impl FetchRow {
    fn fresh(service: &str, source: &str, node_id: &str) -> Self {
        Self {
            service: service.to_owned(),
            source: source.to_owned(),
            node_id: node_id.to_owned(),
            next_fetch_at: 0,
            etag: None,
            value_hash: None,
            last_attempt_at: None,
            last_success_at: None,
            last_error: None,
            failures: 0,
            circuit: CLOSED.to_owned(),
            alerting: false,
        }
    }
}

/// The rows a new source fetches, due at once: one, or one per node of its service
/// (a single INSERT ... SELECT however many nodes there are).
pub fn create_for(c: &mut Conn<'_>, src: &SourceRow) -> QueryResult<()> {
    if !src.is_node_scope() {
        let row = FetchRow::fresh(&src.service, &src.name, "");
        return on_backend!(c, c => diesel::insert_into(source_fetches::table).values(&row).execute(c))
            .map(drop);
    }
    use diesel::sql_types::{BigInt, Text};
    let name = src.name.clone();
    on_backend!(c, c => diesel::insert_into(source_fetches::table)
        .values(
            nodes::table
                .filter(nodes::service.eq(&src.service))
                .select((nodes::service, name.clone().into_sql::<Text>(), nodes::node_id, 0i64.into_sql::<BigInt>())),
        )
        .into_columns((
            source_fetches::service,
            source_fetches::source,
            source_fetches::node_id,
            source_fetches::next_fetch_at,
        ))
        .execute(c))
    .map(drop)
}

/// A changed source starts over: due at once, no ETag (the URL or headers may differ),
/// no failures. The last delivered hash stays, so an unchanged answer is not delivered
/// again.
pub fn restart(c: &mut Conn<'_>, service: &str, source: &str) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(
        source_fetches::table
            .filter(source_fetches::service.eq(service))
            .filter(source_fetches::source.eq(source)),
    )
    .set((
        source_fetches::next_fetch_at.eq(0i64),
        source_fetches::etag.eq(None::<String>),
        source_fetches::last_error.eq(None::<String>),
        source_fetches::failures.eq(0),
        source_fetches::circuit.eq(CLOSED),
        source_fetches::alerting.eq(false),
    ))
    .execute(c))
    .map(drop)
}

pub fn delete_source(c: &mut Conn<'_>, service: &str, source: &str) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(
        source_fetches::table
            .filter(source_fetches::service.eq(service))
            .filter(source_fetches::source.eq(source)),
    )
    .execute(c))
}

/// When the next row is due (leased rows included), from the index.
pub fn next_due(c: &mut Conn<'_>) -> QueryResult<Option<i64>> {
    on_backend!(c, c => source_fetches::table.select(min(source_fetches::next_fetch_at)).first(c))
}

/// Claims up to `limit` due rows, soonest first, until `lease_until`: their
/// `next_fetch_at` moves there, and an open circuit becomes half-open (this is its
/// trial fetch). Returns the rows as they were. On PostgreSQL rows another replica is
/// claiming are skipped.
pub fn claim(
    c: &mut Conn<'_>,
    now: i64,
    limit: i64,
    lease_until: i64,
) -> QueryResult<Vec<FetchRow>> {
    // A macro, not a value: `as_select` is typed per backend.
    macro_rules! q {
        () => {
            source_fetches::table
                .filter(source_fetches::next_fetch_at.le(now))
                .order(source_fetches::next_fetch_at)
                .limit(limit)
                .select(FetchRow::as_select())
        };
    }
    let rows = match c {
        Conn::Pg(c) => q!().for_update().skip_locked().load(*c)?,
        Conn::Sqlite(c) => q!().load(*c)?,
    };
    for r in &rows {
        let circuit = if r.circuit == CLOSED {
            CLOSED
        } else {
            HALF_OPEN
        };
        on_backend!(c, c => diesel::update(source_fetches::table.find((&r.service, &r.source, &r.node_id)))
            .set((source_fetches::next_fetch_at.eq(lease_until), source_fetches::circuit.eq(circuit)))
            .execute(c))?;
    }
    Ok(rows)
}

/// One row, locked until the transaction ends on PostgreSQL, so recording a fetch and
/// deleting or changing its source happen one after the other.
pub fn get_for_update(
    c: &mut Conn<'_>,
    service: &str,
    source: &str,
    node_id: &str,
) -> QueryResult<Option<FetchRow>> {
    macro_rules! q {
        () => {
            source_fetches::table
                .find((service, source, node_id))
                .select(FetchRow::as_select())
        };
    }
    match c {
        Conn::Pg(c) => q!().for_update().first(*c).optional(),
        Conn::Sqlite(c) => q!().first(*c).optional(),
    }
}

pub fn save(c: &mut Conn<'_>, row: &FetchRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(source_fetches::table.find((&row.service, &row.source, &row.node_id)))
        .set(row)
        .execute(c))
    .map(drop)
}

/// Rows of (service, node) counted in its `source-failing` alert.
pub fn alerting(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<i64> {
    on_backend!(c, c => source_fetches::table
        .filter(source_fetches::service.eq(service))
        .filter(source_fetches::node_id.eq(node_id))
        .filter(source_fetches::alerting.eq(true))
        .select(count_star())
        .first(c))
}

/// The nodes ('' for service scope) whose rows of `source` count in an alert.
pub fn alerting_nodes(c: &mut Conn<'_>, service: &str, source: &str) -> QueryResult<Vec<String>> {
    on_backend!(c, c => source_fetches::table
        .filter(source_fetches::service.eq(service))
        .filter(source_fetches::source.eq(source))
        .filter(source_fetches::alerting.eq(true))
        .select(source_fetches::node_id)
        .load(c))
}

/// How a source's fetches go, over all its rows.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub targets: i64,
    pub failing: i64,
    pub max_failures: i32,
    pub last_success_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub next_fetch_at: Option<i64>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// The worst circuit: open over half-open over closed.
    pub circuit: &'static str,
}

type Aggregates = (i64, Option<i32>, Option<i64>, Option<i64>, Option<i64>);

pub fn summary(c: &mut Conn<'_>, service: &str, source: &str) -> QueryResult<Summary> {
    macro_rules! of_source {
        () => {
            source_fetches::table
                .filter(source_fetches::service.eq(service))
                .filter(source_fetches::source.eq(source))
        };
    }
    let (targets, max_failures, last_success_at, last_attempt_at, next_fetch_at): Aggregates = on_backend!(c, c => of_source!()
        .select((
            count_star(),
            max(source_fetches::failures),
            max(source_fetches::last_success_at),
            max(source_fetches::last_attempt_at),
            min(source_fetches::next_fetch_at),
        ))
        .first(c))?;
    let failing: i64 = on_backend!(c, c => of_source!()
        .filter(source_fetches::failures.gt(0))
        .select(count_star())
        .first(c))?;
    let last_error: Option<Option<String>> = on_backend!(c, c => of_source!()
        .filter(source_fetches::last_error.is_not_null())
        .order(source_fetches::last_attempt_at.desc())
        .select(source_fetches::last_error)
        .first(c)
        .optional())?;
    let circuits: Vec<String> = on_backend!(c, c => of_source!()
        .filter(source_fetches::circuit.ne(CLOSED))
        .select(source_fetches::circuit)
        .distinct()
        .load(c))?;
    let circuit = if circuits.iter().any(|s| s == OPEN) {
        OPEN
    } else if circuits.is_empty() {
        CLOSED
    } else {
        HALF_OPEN
    };
    Ok(Summary {
        targets,
        failing,
        max_failures: max_failures.unwrap_or(0),
        last_success_at,
        last_attempt_at,
        next_fetch_at,
        last_error: last_error.flatten(),
        circuit,
    })
}

/// The failing rows of a source (node scope: which nodes), most failures first.
pub fn failing(
    c: &mut Conn<'_>,
    service: &str,
    source: &str,
    limit: i64,
) -> QueryResult<Vec<FetchRow>> {
    on_backend!(c, c => source_fetches::table
        .filter(source_fetches::service.eq(service))
        .filter(source_fetches::source.eq(source))
        .filter(source_fetches::failures.gt(0))
        .order((source_fetches::failures.desc(), source_fetches::node_id))
        .limit(limit)
        .select(FetchRow::as_select())
        .load(c))
}
