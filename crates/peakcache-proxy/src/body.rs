//! Response bodies: whole ones from the cache, streamed ones from the origin.

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};

/// The error a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// No body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body streamed from the origin as it arrives.
pub fn stream(incoming: Incoming) -> Body {
    incoming.map_err(BoxError::from).boxed()
}

/// What reading a body up to a limit gave.
pub enum Limited {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// The limit was passed: what was read so far, and a body that yields it followed by the rest.
    TooLarge(Body),
}

/// Reads `incoming` whole if it is at most `limit` bytes; otherwise stops buffering and returns
/// a body that streams the rest, so a large response is never held whole in memory.
pub async fn read_limited(mut incoming: Incoming, limit: u64) -> Result<Limited, BoxError> {
    if incoming.size_hint().lower() > limit {
        return Ok(Limited::TooLarge(stream(incoming)));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > limit {
                let chain = Chain {
                    head: Some(full(buf.freeze())),
                    rest: stream(incoming),
                };
                return Ok(Limited::TooLarge(chain.boxed()));
            }
        }
    }
    Ok(Limited::Whole(buf.freeze()))
}

/// Two bodies, one after the other.
struct Chain {
    head: Option<Body>,
    rest: Body,
}

impl hyper::body::Body for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        if let Some(head) = self.head.as_mut() {
            match std::pin::Pin::new(head).poll_frame(cx) {
                Poll::Ready(None) => self.head = None,
                other => return other,
            }
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}
