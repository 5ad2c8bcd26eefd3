//! The attacker's side of the outbound scenarios: a raw HTTP/1.1 server on 127.0.0.1,
//! port 0, standing in for an internal service (credentials at `/latest/creds`) and for
//! a tenant's hostile answers (a redirect to the credentials, an endless chunked body,
//! answers carrying a marker that must never be copied, a request that never gets an
//! answer) and for the open ports a port scan looks for (one that hangs up, one that
//! speaks another protocol). Paths are matched and counted without their query
//! (`/leaky-500` by prefix, so a test can put secrets in its path). It
//! counts what it was asked and how many body bytes it got out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Text the hostile answers carry; it must never reach an error, a status or a log.
pub const MARKER: &str = "SECRET-BODY-7731";

#[derive(Default)]
pub struct Seen {
    /// Requests per path.
    pub hits: Mutex<HashMap<String, usize>>,
    /// Body bytes written by `/endless` before the client hung up.
    pub endless_bytes: AtomicU64,
}

impl Seen {
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

pub struct Hostile {
    pub base: String,
    pub port: u16,
    pub seen: Arc<Seen>,
}

pub async fn hostile() -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let base = format!("http://127.0.0.1:{port}");
    let seen = Arc::new(Seen::default());
    let (s, b) = (seen.clone(), base.clone());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, s.clone(), b.clone()));
        }
    });
    Hostile { base, port, seen }
}

async fn serve(mut conn: TcpStream, seen: Arc<Seen>, base: String) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    *seen
        .hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let simple = |status: &str, body: &str, extra: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    let answer = match path.as_str() {
        "/latest/creds" => simple(
            "200 OK",
            "{\"AccessKeyId\":\"AKIA-INTERNAL\",\"SecretAccessKey\":\"internal-secret\"}",
            "content-type: application/json\r\n",
        ),
        "/redirect" => simple(
            "302 Found",
            &format!("moved: {MARKER}"),
            &format!("location: {base}/latest/creds\r\n"),
        ),
        "/leaky-json" => simple("200 OK", &format!("{{ {MARKER} ]"), ""),
        "/leaky-inventory" => simple("200 OK", &format!("n1\n{MARKER} !\n"), ""),
        p if p.starts_with("/leaky-500") => simple("500 Internal Server Error", MARKER, ""),
        "/banner" => format!("SSH-2.0-OpenSSH_9.6 {MARKER}\r\n"),
        "/hangup" => return,
        "/stall" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        "/endless" => return endless(conn, &seen).await,
        _ => simple("404 Not Found", "", ""),
    };
    let _ = conn.write_all(answer.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// A chunked answer that never ends: 64 KiB chunks of a JSON string until the client
/// goes away.
async fn endless(mut conn: TcpStream, seen: &Seen) {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
    chunk.extend_from_slice(b"\r\n");
    while conn.write_all(&chunk).await.is_ok() {
        seen.endless_bytes.fetch_add(64 * 1024, Ordering::Relaxed);
    }
}
