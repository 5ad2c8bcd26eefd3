//! Time limits of a connection after its headers: a request body must arrive whole
//! within the body deadline ([`DeadlineBody`], one deadline for the whole body, so a
//! client trickling a byte at a time is cut off too), and a connection with no request
//! in flight for the idle timeout is closed ([`Activity`]; HTTP/2 pings only prove the
//! peer is alive, an idle peer would be held forever). A held long-poll is a request
//! in flight, so agents are never idle.

use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// The two limits, as the accept loop applies them (from `LimitSettings`).
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    pub body: Duration,
    pub idle: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// Whether `e` or one of its sources is a body deadline.
    pub fn is_cause_of(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(e);
        while let Some(e) = next {
            if e.is::<Self>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline has passed.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Instant>,
    ended: Notify,
}

/// Held while a request is served; its drop (also when the client went away) counts
/// the request as ended.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.lock() = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
            ended: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Instant> {
        self.last_end
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Counts idleness from now on, as if a request had just ended.
    pub fn restart_idle(&self) {
        *self.lock() = Instant::now();
    }

    /// Returns once no request has been in flight for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let ended = self.ended.notified();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                ended.await; // a request ending restarts the count
                continue;
            }
            let deadline = *self.lock() + idle;
            if Instant::now() >= deadline {
                return;
            }
            // A request starting and ending meanwhile moves the deadline: look again.
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = ended => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_connection_is_idle_only_without_requests_in_flight() {
        let a = Activity::new();
        let held = a.enter();
        let idle = tokio::spawn({
            let a = a.clone();
            async move { a.idle_for(MS * 300).await }
        });
        tokio::time::sleep(MS * 600).await;
        assert!(!idle.is_finished(), "a held request is not idle");
        drop(held);
        tokio::time::sleep(MS * 150).await;
        assert!(!idle.is_finished(), "idle only after the whole timeout");
        tokio::time::sleep(MS * 400).await;
        assert!(idle.is_finished());
    }

    #[tokio::test]
    async fn a_trickling_body_fails_at_its_deadline() {
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(MS * 50).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        let body = DeadlineBody::new(axum::body::Body::from_stream(trickle), MS * 300);
        let err = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
            .await
            .expect_err("cut off");
        assert!(BodyTimedOut::is_cause_of(&err), "{err}");
    }
}
