//! The rules a service's timing settings must keep with each other and with the
//! control plane's longest poll wait. Each broken rule says which one it is and the
//! smallest (or largest) valid value, so an operator can fix it in one go. Used by the
//! API when a service is saved (422) and at startup for rows saved before a rule
//! existed (a WARN per service).

use crate::store::{self, Store, StoreError, services::ServiceRow};

/// The longest any certificate or staleness setting may be: 90 days.
pub const MAX_SECONDS: i64 = 90 * 86400;

/// A broken rule: its name (stable, for scripts) and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
}

fn broken(rule: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, detail })
}

/// Checks `row` against every rule; `max_poll_wait_seconds` is the longest a poll is
/// held on this deployment.
pub fn check(row: &ServiceRow, max_poll_wait_seconds: i64) -> Result<(), Violation> {
    let ttl = row.cert_ttl_seconds;
    if !(60..=MAX_SECONDS).contains(&ttl) {
        return broken(
            "cert-ttl-range",
            format!("cert_ttl_seconds must be 60..={MAX_SECONDS}, got {ttl}"),
        );
    }
    let renew = row.renew_before_seconds;
    if renew >= ttl {
        return broken(
            "renew-before-below-ttl",
            format!(
                "renew_before_seconds ({renew}) must be below cert_ttl_seconds ({ttl}): at most {}",
                ttl - 1
            ),
        );
    }
    if renew < 10 {
        return broken(
            "renew-before-minimum",
            format!("renew_before_seconds ({renew}) must be at least 10"),
        );
    }
    let alert = row.alert_before_seconds;
    if !(0..=renew).contains(&alert) {
        return broken(
            "alert-before-within-renew-before",
            format!(
                "alert_before_seconds ({alert}) must be 0..=renew_before_seconds ({renew}): an alert before the renewal is due would fire for every healthy node"
            ),
        );
    }
    // A connected node answers a held poll at least once per wait; staleness shorter
    // than two waits flags healthy nodes between polls.
    let stale = row.stale_after_seconds;
    let min_stale = (2 * max_poll_wait_seconds).max(10);
    if stale < min_stale {
        return broken(
            "stale-after-above-poll-wait",
            format!(
                "stale_after_seconds ({stale}) must be at least twice the longest poll wait ({max_poll_wait_seconds} s): the smallest valid value is {min_stale}"
            ),
        );
    }
    if stale > MAX_SECONDS {
        return broken(
            "stale-after-maximum",
            format!("stale_after_seconds ({stale}) must be at most {MAX_SECONDS}"),
        );
    }
    let grace = row.grace_seconds;
    if !(0..=MAX_SECONDS).contains(&grace) {
        return broken(
            "grace-range",
            format!("grace_seconds ({grace}) must be 0..={MAX_SECONDS}"),
        );
    }
    Ok(())
}

/// Every stored service that breaks a rule (saved before the rule existed, or under a
/// longer poll wait), read in pages.
pub async fn report(
    store: &Store,
    max_poll_wait_seconds: i64,
) -> Result<Vec<(String, Violation)>, StoreError> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let from = after.clone();
        let page = store
            .read(move |c| store::services::list(c, None, from.as_deref(), 500))
            .await?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = Some(last.name.clone());
        found.extend(page.iter().filter_map(|row| {
            check(row, max_poll_wait_seconds)
                .err()
                .map(|v| (row.name.clone(), v))
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ServiceRow {
        ServiceRow {
            name: "web".into(),
            tenant: "default".into(),
            cert_ttl_seconds: 3600,
            renew_before_seconds: 1200,
            key_type: "ecdsa-p256".into(),
            key_mode: "central".into(),
            stale_after_seconds: 600,
            grace_seconds: 300,
            alert_before_seconds: 600,
            san_template: "{node}.{service}.{trust_domain}".into(),
            created_at: 0,
            updated_at: 0,
            webhook_url: None,
            webhook_secret_sealed: None,
            webhook_key_id: None,
            dns_suffixes: None,
            ip_ranges: None,
            wildcard_names: false,
        }
    }

    fn rule(r: ServiceRow) -> &'static str {
        check(&r, 55).expect_err("a broken rule").rule
    }

    #[test]
    fn a_consistent_service_passes() {
        assert_eq!(check(&row(), 55), Ok(()));
    }

    #[test]
    fn each_contradiction_names_its_rule_and_the_valid_bound() {
        let r = ServiceRow {
            renew_before_seconds: 3600,
            ..row()
        };
        let v = check(&r, 55).expect_err("renew_before at the ttl");
        assert_eq!(v.rule, "renew-before-below-ttl");
        assert!(v.detail.contains("at most 3599"), "{}", v.detail);
        assert_eq!(
            rule(ServiceRow {
                alert_before_seconds: 1201,
                ..row()
            }),
            "alert-before-within-renew-before"
        );
        let v = check(
            &ServiceRow {
                stale_after_seconds: 60,
                ..row()
            },
            55,
        )
        .expect_err("stale below two waits");
        assert_eq!(v.rule, "stale-after-above-poll-wait");
        assert!(
            v.detail.contains("smallest valid value is 110"),
            "{}",
            v.detail
        );
        assert_eq!(
            check(
                &ServiceRow {
                    stale_after_seconds: 10,
                    ..row()
                },
                5
            ),
            Ok(()),
            "a deployment with short polls allows short staleness"
        );
        assert_eq!(
            rule(ServiceRow {
                cert_ttl_seconds: 30,
                ..row()
            }),
            "cert-ttl-range"
        );
    }
}
