//! Invalidation after unsafe requests (RFC 9111 §4.4).

use http::header::{self, HeaderMap};
use http::uri::Uri;
use http::{request, response, Method};

use crate::config::Config;
use crate::key::{key_for, request_origin, Key, Origin};

/// RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe; every other method, including
/// unknown ones, is treated as unsafe.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// Resolves a URI reference (RFC 3986 §5.2) against the origin and path of the target URI.
fn resolve(origin: &Origin, base_path: &str, reference: &str) -> Option<Uri> {
    let reference = reference.split('#').next().unwrap_or("").trim();
    if reference.is_empty() {
        return None;
    }
    let has_scheme = reference.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let absolute = if has_scheme {
        reference.to_owned()
    } else if let Some(rest) = reference.strip_prefix("//") {
        format!("{}://{rest}", origin.scheme)
    } else {
        let (path, query) = match reference.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (reference, None),
        };
        let path = if path.starts_with('/') {
            remove_dot_segments(path)
        } else if path.is_empty() {
            base_path.to_owned()
        } else {
            let dir = base_path.rsplit_once('/').map_or("", |(d, _)| d);
            remove_dot_segments(&format!("{dir}/{path}"))
        };
        match query {
            Some(q) => format!("{}://{}{path}?{q}", origin.scheme, origin.authority),
            None => format!("{}://{}{path}", origin.scheme, origin.authority),
        }
    };
    absolute.parse().ok()
}

/// The keys to invalidate after `request` got `response` (RFC 9111 §4.4): for an unsafe method
/// with a 2xx or 3xx status, the target URI's key, and the keys of `Location` and
/// `Content-Location` when they have the same origin (scheme, host and port) as the target.
pub(crate) fn invalidations(
    config: &Config,
    request: &request::Parts,
    response: &response::Parts,
) -> Vec<Key> {
    if is_safe(&request.method) {
        return Vec::new();
    }
    if !(response.status.is_success() || response.status.is_redirection()) {
        return Vec::new();
    }
    let Ok(origin) = request_origin(config, &request.uri, &request.headers, None) else {
        return Vec::new();
    };
    let target = key_for(config, &origin, &request.uri);
    let mut keys = vec![target];
    let no_headers = HeaderMap::new();
    for field in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(reference) = response.headers.get(&field).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Some(uri) = resolve(&origin, request.uri.path(), reference) else {
            continue;
        };
        match request_origin(config, &uri, &no_headers, None) {
            Ok(o) if o == origin => {
                let k = key_for(config, &o, &uri);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            _ => {}
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(
        method: &str,
        status: u16,
        location: Option<&str>,
        content_location: Option<&str>,
    ) -> Vec<String> {
        let req = http::Request::builder()
            .method(method)
            .uri("/a/b/c?x=1&utm_source=y")
            .header("host", "example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut b = http::Response::builder().status(status);
        if let Some(l) = location {
            b = b.header("location", l);
        }
        if let Some(l) = content_location {
            b = b.header("content-location", l);
        }
        let resp = b.body(()).unwrap().into_parts().0;
        invalidations(&Config::default(), &req, &resp)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn rfc9111_4_4_unsafe_success_invalidates_target_uri() {
        assert_eq!(
            run("POST", 200, None, None),
            vec!["GET https://example.com/a/b/c?x=1"]
        );
        assert_eq!(run("DELETE", 302, None, None).len(), 1);
        assert_eq!(
            run("PURGE-ISH", 204, None, None).len(),
            1,
            "unknown methods are unsafe"
        );
    }

    #[test]
    fn rfc9111_4_4_safe_methods_and_errors_invalidate_nothing() {
        assert!(run("GET", 200, None, None).is_empty());
        assert!(run("OPTIONS", 200, None, None).is_empty());
        assert!(run("POST", 500, None, None).is_empty());
        assert!(run("PUT", 404, None, None).is_empty());
    }

    #[test]
    fn rfc9111_4_4_location_and_content_location_when_same_origin() {
        let k = run(
            "POST",
            201,
            Some("/items/7"),
            Some("https://EXAMPLE.com:443/a/b/d"),
        );
        assert_eq!(
            k,
            vec![
                "GET https://example.com/a/b/c?x=1",
                "GET https://example.com/items/7",
                "GET https://example.com/a/b/d"
            ]
        );
        let k = run("POST", 303, Some("../e?z=1#frag"), None);
        assert_eq!(k[1], "GET https://example.com/a/e?z=1");
        let k = run("POST", 303, Some("//example.com/f"), None);
        assert_eq!(k[1], "GET https://example.com/f");
    }

    #[test]
    fn rfc9111_4_4_other_origins_are_not_invalidated() {
        assert_eq!(
            run("POST", 201, Some("https://other.example/x"), None).len(),
            1
        );
        assert_eq!(
            run("POST", 201, Some("http://example.com/x"), None).len(),
            1
        );
        assert_eq!(
            run("POST", 201, Some("https://example.com:8443/x"), None).len(),
            1
        );
    }

    #[test]
    fn rfc3986_5_2_4_dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/../x"), "/x");
        assert_eq!(remove_dot_segments("/a/.."), "/");
    }

    proptest! {
        #[test]
        fn location_resolution_never_panics(loc in "[ -~]{0,40}") {
            let _ = run("POST", 201, http::HeaderValue::from_str(&loc).ok().map(|_| loc.as_str()), None);
        }
    }
}
