//! A bound on the requests one kube-rs client has in flight. hyper's pool
//! opens a new connection for every concurrent request, with no ceiling: at
//! 10,000 pods the in-process components' status writes and TokenRequests
//! opened thousands of loopback TLS connections (two descriptors each, both
//! ends in this process) and ran `skiff up` out of file descriptors. A
//! request waits for a permit before it is sent and holds it until the
//! response head arrives, so a watch lets go at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;

/// Wraps a client's service in [`RequestLimit`].
pub struct RequestLimitLayer {
    permits: Arc<Semaphore>,
}

impl RequestLimitLayer {
    /// At most `max_in_flight` requests of the wrapped client are sent at once.
    pub fn new(max_in_flight: usize) -> RequestLimitLayer {
        RequestLimitLayer {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> tower::Layer<S> for RequestLimitLayer {
    type Service = RequestLimit<S>;

    fn layer(&self, inner: S) -> RequestLimit<S> {
        RequestLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// A service whose calls take a permit before they start; clones share the permits.
#[derive(Clone)]
pub struct RequestLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, Request> tower::Service<Request> for RequestLimit<S>
where
    S: tower::Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The inner future is lazy: nothing is sent (no connection is taken
        // from or added to the pool) until it is first polled.
        let response = self.inner.call(request);
        let permits = self.permits.clone();
        Box::pin(async move {
            // The semaphore is never closed, so this only waits.
            let _permit = permits.acquire_owned().await.ok();
            response.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, Service, ServiceExt};

    #[tokio::test]
    async fn no_more_than_the_limit_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let inner = tower::service_fn(move |_: ()| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(())
            }
        });
        let mut service = RequestLimitLayer::new(3).layer(inner);
        let mut calls = Vec::new();
        for _ in 0..20 {
            calls.push(service.ready().await.unwrap().call(()));
        }
        for result in futures::future::join_all(calls).await {
            result.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
