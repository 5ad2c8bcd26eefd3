//! Retention: history past the retention period goes, everything still in use stays.
//! Rows of every kind are written straight into the database, some older than the
//! period and some not, some finished and some not; the job's passes then leave exactly
//! the rows that must stay.

use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::json;
use std::time::Duration;

fn count(cp: &ControlPlane, table: &str, filter: &str) -> i64 {
    cp.db.scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table} WHERE {filter}"
    ))
}

async fn only_old_finished_history_is_removed(backend: Backend) {
    let cp = spawn_control_plane(backend, |cfg| {
        cfg.jobs.retention = Duration::from_secs(3600);
        cfg.jobs.retention_tick = Duration::from_millis(200);
        // The rotation driver would finish the old queued and pending rows itself
        // (timeouts, gone nodes); keep it away so only retention acts.
        cfg.jobs.rotation_tick = Duration::from_secs(3600);
        cfg.jobs.delivery_timeout = Duration::from_secs(86_400);
    })
    .await;
    cp.create_service("web", json!({})).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let (old, recent) = (now - 2 * 3_600_000, now - 60_000);
    let delivery = |id: &str, rotation: &str, state: &str, at: i64| {
        format!(
            "INSERT INTO deliveries (id, service, node_id, rotation_id, state, created_at) \
             VALUES ('{id}', 'web', 'n1', {rotation}, '{state}', {at})"
        )
    };
    for sql in [
        format!(
            "INSERT INTO rotations (id, service, max_in_flight, state, total, created_at, finished_at) VALUES ('rot-done', 'web', 1, 'done', 1, {old}, {old})"
        ),
        format!(
            "INSERT INTO rotations (id, service, max_in_flight, state, total, created_at) VALUES ('rot-running', 'web', 1, 'running', 1, {old})"
        ),
        delivery("gone-delivered", "NULL", "delivered", old),
        delivery("gone-failed", "NULL", "failed", old),
        delivery("gone-of-done-rotation", "'rot-done'", "delivered", recent),
        delivery("keep-pending", "NULL", "pending", old),
        delivery("keep-queued", "'rot-running'", "queued", old),
        delivery("keep-recent", "NULL", "delivered", recent),
        format!(
            "INSERT INTO alerts (id, service, node_id, reason, state, detail, fired_at, resolved_at) VALUES ('gone-alert', 'web', 'n1', 'unseen', 'resolved', '', {old}, {old})"
        ),
        format!(
            "INSERT INTO alerts (id, service, node_id, reason, state, detail, fired_at) VALUES ('keep-firing', 'web', 'n2', 'unseen', 'firing', '', {old})"
        ),
        format!(
            "INSERT INTO alerts (id, service, node_id, reason, state, detail, fired_at, resolved_at) VALUES ('keep-resolved-recently', 'web', 'n3', 'unseen', 'resolved', '', {old}, {recent})"
        ),
        format!(
            "INSERT INTO alert_events (id, alert_id, service, payload, created_at, next_attempt_at, delivered_at) VALUES ('gone-event', 'a', 'web', '{{}}', {old}, {old}, {old})"
        ),
        format!(
            "INSERT INTO alert_events (id, alert_id, service, payload, created_at, next_attempt_at) VALUES ('keep-undelivered', 'a', 'web', '{{}}', {old}, {old})"
        ),
    ] {
        cp.db.execute(&sql);
    }

    eventually(
        "old history is removed",
        Duration::from_secs(15),
        || async {
            (count(&cp, "deliveries", "id LIKE 'gone-%'") == 0
                && count(&cp, "alerts", "id LIKE 'gone-%'") == 0
                && count(&cp, "alert_events", "id LIKE 'gone-%'") == 0
                && count(&cp, "rotations", "id = 'rot-done'") == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(count(&cp, "deliveries", "id LIKE 'keep-%'"), 3);
    assert_eq!(count(&cp, "alerts", "id LIKE 'keep-%'"), 2);
    assert_eq!(count(&cp, "alert_events", "id LIKE 'keep-%'"), 1);
    assert_eq!(count(&cp, "rotations", "id = 'rot-running'"), 1);
}

#[tokio::test]
async fn only_old_finished_history_is_removed_postgres() {
    only_old_finished_history_is_removed(Backend::Postgres).await;
}

#[tokio::test]
async fn only_old_finished_history_is_removed_sqlite() {
    only_old_finished_history_is_removed(Backend::Sqlite).await;
}
