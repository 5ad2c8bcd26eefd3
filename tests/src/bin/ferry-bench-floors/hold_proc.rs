//! The hold benchmark's child processes (hidden subcommands). The server binds
//! 127.0.0.1 on a free port, prints `port <p>`, and holds every connection it accepts in
//! its own task waiting on a read (plain TCP: as accepted; TLS: after a tokio-rustls
//! mTLS handshake), printing `held <n>` whenever the count changes. The clients open
//! their share of connections (bounded in flight), print `connected <n>` and keep them
//! idle. Both run until their stdin closes, so neither outlives the parent.
//!
//! A client counts a connection only once the server has shown it has it: the TLS
//! handshake, or for plain TCP one byte the server writes when it starts holding. A
//! connect() alone is not proof: when the accept queue overflows, Linux drops the final
//! ACK (or a SYN-cookie ACK) and the client believes in a connection the server never
//! sees. Those are retried.

use crate::Opts;
use crate::certs;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub const SERVER: &str = "__hold-server";
pub const CLIENTS: &str = "__hold-clients";

/// Handshakes (or connects) in flight per client process.
const IN_FLIGHT: usize = 64;
/// The server's listen backlog (net.core.somaxconn caps it).
const BACKLOG: u32 = 4096;
/// How long a client waits for the server's proof that it holds a connection.
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Tls,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            other => bail!("--kind must be tcp or tls, not {other:?}"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

fn kind_and_dir(opts: &Opts) -> Result<(Kind, PathBuf)> {
    let kind = Kind::parse(opts.get("--kind").context("--kind")?)?;
    let dir = PathBuf::from(opts.get("--dir").context("--dir")?);
    Ok((kind, dir))
}

/// Resolves when stdin reaches end of file (the parent closed it or died).
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    })
    .await;
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn hold(mut conn: impl AsyncRead + AsyncWrite + Unpin, held: Arc<AtomicUsize>, greet: bool) {
    if greet && conn.write_all(b"!").await.is_err() {
        return;
    }
    held.fetch_add(1, Ordering::Relaxed);
    let mut byte = [0u8; 1];
    let _ = conn.read(&mut byte).await;
    held.fetch_sub(1, Ordering::Relaxed);
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, held: Arc<AtomicUsize>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("hold server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let held = held.clone();
        match &tls {
            None => {
                tokio::spawn(hold(tcp, held, true));
            }
            Some(acceptor) => {
                let accept = acceptor.accept(tcp);
                tokio::spawn(async move {
                    match accept.await {
                        Ok(stream) => hold(stream, held, false).await,
                        Err(e) => eprintln!("hold server: handshake: {e}"),
                    }
                });
            }
        }
    }
}

/// `__hold-server --kind tcp|tls --dir CERTS`
pub fn server(opts: &Opts) -> Result<()> {
    let (kind, dir) = kind_and_dir(opts)?;
    let tls = match kind {
        Kind::Tcp => None,
        Kind::Tls => Some(TlsAcceptor::from(certs::server_config(&dir)?)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(([127, 0, 0, 1], 0).into())?;
        let listener = socket.listen(BACKLOG)?;
        say(&format!("port {}", listener.local_addr()?.port()));
        let held = Arc::new(AtomicUsize::new(0));
        tokio::spawn(accept_loop(listener, tls, held.clone()));
        tokio::spawn(async move {
            let mut reported = usize::MAX;
            loop {
                let now = held.load(Ordering::Relaxed);
                if now != reported {
                    say(&format!("held {now}"));
                    reported = now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        stdin_closed().await;
        anyhow::Ok(())
    })?;
    // Dropping thousands of connections one by one is work nobody waits for.
    std::process::exit(0)
}

/// An open connection, held (never read) until the process exits.
type Held = Box<dyn Send>;

async fn connect(port: u16, tls: Option<TlsConnector>) -> Result<Held> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let proven = tokio::time::timeout(PROOF_TIMEOUT, async {
        anyhow::Ok(match tls {
            None => {
                tcp.read_exact(&mut [0u8; 1]).await?;
                Box::new(tcp) as Held
            }
            Some(c) => {
                let name = rustls_pki_types::ServerName::try_from("localhost")?;
                Box::new(c.connect(name, tcp).await?)
            }
        })
    });
    proven
        .await
        .context("the server did not show it holds the connection")?
}

/// `__hold-clients --kind tcp|tls --dir CERTS --port P --count N`
pub fn clients(opts: &Opts) -> Result<()> {
    let (kind, dir) = kind_and_dir(opts)?;
    let port = u16::try_from(opts.num("--port", 0)?)?;
    let count = usize::try_from(opts.num("--count", 0)?)?;
    let tls = match kind {
        Kind::Tcp => None,
        Kind::Tls => Some(TlsConnector::from(certs::client_config(&dir)?)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conns = Vec::with_capacity(count);
        let mut tasks = JoinSet::new();
        let (mut started, mut failures) = (0usize, 0usize);
        while conns.len() < count {
            while started < count && tasks.len() < IN_FLIGHT {
                tasks.spawn(connect(port, tls.clone()));
                started += 1;
            }
            match tasks.join_next().await {
                Some(Ok(Ok(conn))) => conns.push(conn),
                Some(Ok(Err(e))) => {
                    failures += 1;
                    if failures > 10 + count / 10 {
                        bail!("{failures} connections failed, the last: {e:#}");
                    }
                    started -= 1; // try that one again
                }
                Some(Err(e)) => bail!("connect task: {e}"),
                None => bail!("connect tasks ended early"),
            }
        }
        say(&format!("connected {}", conns.len()));
        stdin_closed().await;
        drop(conns);
        Ok(())
    })?;
    std::process::exit(0)
}
