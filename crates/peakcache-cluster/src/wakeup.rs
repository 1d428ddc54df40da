//! Waking the hosts that wait for another host's fill: one subscription per host to the
//! cluster's `filled` channel, whose messages are the keys whose lease was released.
//!
//! One channel for the cluster rather than one per key: a host subscribes once, at start, so a
//! wait costs no `SUBSCRIBE` round trip and cannot miss an announcement sent between its
//! lookup and its subscription (the waiter registers locally before it asks Redis). The price
//! is that every host hears every release: one short message per fill per host, small beside
//! the fills themselves. Keyspace notifications would need the server's
//! `notify-keyspace-events` setting, which a host should not have to change.

use crate::stats::incr;
use crate::{connect_timeout, Backoff, Shared};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The keys this host waits for, each with the notification its waiters listen to.
#[derive(Default)]
pub(crate) struct Wakeups {
    waiting: Mutex<HashMap<Bytes, Arc<Notify>>>,
}

impl Wakeups {
    /// The notification for `key`. Enable a `notified()` on it before asking Redis, so an
    /// announcement that comes in between is not missed.
    pub(crate) fn register(&self, key: &[u8]) -> Arc<Notify> {
        self.waiting
            .lock()
            .entry(Bytes::copy_from_slice(key))
            .or_default()
            .clone()
    }

    /// Wakes every waiter of `key`.
    pub(crate) fn wake(&self, key: &[u8]) {
        if let Some(n) = self.waiting.lock().remove(key) {
            n.notify_waiters();
        }
    }

    /// Forgets `key` when its last waiter leaves without being woken.
    pub(crate) fn forget(&self, key: &[u8], notify: &Arc<Notify>) {
        let mut waiting = self.waiting.lock();
        // Two references: the map's and the caller's.
        if waiting
            .get(key)
            .is_some_and(|n| Arc::ptr_eq(n, notify) && Arc::strong_count(n) == 2)
        {
            waiting.remove(key);
        }
    }
}

/// Listens to the `filled` channel forever, reconnecting with back-off. A message missed while
/// disconnected costs its waiters a wait until the lease expires, never an answer.
pub(crate) async fn listen(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(&shared.config);
    let mut had_connection = false;
    loop {
        let subscribed = async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(shared.keys.filled()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(connect_timeout(&shared.config), subscribed).await {
            Ok(Ok(pubsub)) => {
                if had_connection {
                    incr(&shared.counters.reconnects);
                }
                had_connection = true;
                backoff.reset();
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    shared.wakeups.wake(msg.get_payload_bytes());
                }
            }
            Ok(Err(e)) => shared.failed("subscribing to fill announcements", &e),
            Err(_) => shared.failed("subscribing to fill announcements", &"timed out"),
        }
        backoff.pause().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_every_waiter_registered_before_it() {
        let w = Wakeups::default();
        let a = w.register(b"k");
        let b = w.register(b"k");
        let (na, nb) = (a.notified(), b.notified());
        tokio::pin!(na, nb);
        na.as_mut().enable();
        nb.as_mut().enable();
        w.wake(b"k");
        tokio::time::timeout(std::time::Duration::from_secs(1), async {
            na.await;
            nb.await;
        })
        .await
        .expect("both woken");
        assert!(w.waiting.lock().is_empty());
    }

    #[test]
    fn the_last_waiter_to_leave_forgets_the_key() {
        let w = Wakeups::default();
        let a = w.register(b"k");
        let b = w.register(b"k");
        w.forget(b"k", &a);
        drop(a);
        assert_eq!(w.waiting.lock().len(), 1, "b still waits");
        w.forget(b"k", &b);
        assert!(w.waiting.lock().is_empty());
    }
}
