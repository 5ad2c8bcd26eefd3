//! Forced refreshes of the fault scenario: bursts of refreshes of distinct nodes, each
//! sent two or three times with one `Idempotency-Key` (staggered so some overlap, partly
//! to another replica), and sent again, replica after replica, until one accepts it.

use super::{BURST, Rng, SEED, SVC};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One forced refresh: its key, what its sends got back.
#[derive(Debug)]
pub struct Refresh {
    pub key: String,
    pub sends: usize,
    pub failed_sends: usize,
    pub cross_replica: bool,
    /// The delivery every accepted send answered with.
    pub id: Option<String>,
    /// Two sends of the key answered with different deliveries.
    pub split: bool,
}

/// Bursts of [`BURST`] forced refreshes of distinct `nodes` every 2-4 s until `deadline`.
pub async fn refresh_bursts(
    client: reqwest::Client,
    urls: Vec<String>,
    token: String,
    nodes: Vec<String>,
    deadline: Instant,
) -> Vec<Refresh> {
    let mut rng = Rng(SEED ^ 0x9e37_79b9_7f4a_7c15);
    let mut tasks = Vec::new();
    let mut burst = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(rng.millis(2000, 4000)).await;
        let mut picked = BTreeSet::new();
        while picked.len() < BURST {
            picked.insert(rng.below(nodes.len() as u64) as usize);
        }
        for n in picked {
            // Two or three sends of one key, staggered by up to 300 ms so some overlap.
            let plan: Vec<(usize, Duration)> = (0..2 + rng.below(2))
                .map(|_| (rng.below(urls.len() as u64) as usize, rng.millis(0, 300)))
                .collect();
            let key = format!("faults-{burst}-{n}");
            let (client, urls, token) = (client.clone(), urls.clone(), token.clone());
            let node = nodes[n].clone();
            tasks.push(tokio::spawn(async move {
                refresh_key(&client, &urls, &token, &node, key, plan).await
            }));
        }
        burst += 1;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("refresh task"));
    }
    out
}

/// Sends `key` per `plan` at once; if no send was accepted (replicas down), sends it
/// again, one replica after another, until one is.
async fn refresh_key(
    client: &reqwest::Client,
    urls: &[String],
    token: &str,
    node: &str,
    key: String,
    plan: Vec<(usize, Duration)>,
) -> Refresh {
    let send = |replica: usize, delay: Duration| {
        let req = client
            .post(format!(
                "{}/v1/services/{SVC}/nodes/{node}/refresh",
                urls[replica]
            ))
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(15))
            .json(&json!({}));
        async move {
            tokio::time::sleep(delay).await;
            let r = req
                .send()
                .await
                .ok()
                .filter(|r| r.status().as_u16() == 202)?;
            let body: Value = r.json().await.ok()?;
            body["delivery_id"].as_str().map(str::to_owned)
        }
    };
    let replicas: BTreeSet<usize> = plan.iter().map(|(r, _)| *r).collect();
    let mut sends = plan.len();
    let mut answers: Vec<Option<String>> = Vec::new();
    let batch: Vec<_> = plan
        .iter()
        .map(|(r, d)| tokio::spawn(send(*r, *d)))
        .collect();
    for t in batch {
        answers.push(t.await.expect("send"));
    }
    let mut next = plan[0].0;
    while answers.iter().all(Option::is_none) && sends < 60 {
        next = (next + 1) % urls.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        answers.push(send(next, Duration::ZERO).await);
        sends += 1;
    }
    let ids: BTreeSet<String> = answers.iter().flatten().cloned().collect();
    Refresh {
        key,
        sends,
        failed_sends: answers.iter().filter(|a| a.is_none()).count(),
        cross_replica: replicas.len() > 1 || sends > plan.len(),
        id: ids.first().cloned(),
        split: ids.len() > 1,
    }
}
