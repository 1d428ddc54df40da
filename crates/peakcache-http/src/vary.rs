//! `Vary` as a secondary key (RFC 9111 §4.1).
//!
//! A stored response with `Vary` may only answer requests whose listed fields match those of
//! the request that produced it. [`VaryKey`] turns the listed fields of a request into bytes
//! that are equal exactly when the fields match after normalisation:
//! - field names are compared case-insensitively and listed in sorted order;
//! - values of several lines are joined with commas, whitespace around list commas is dropped
//!   and runs of whitespace become one space (RFC 9111 §4.1 allows such normalisation);
//! - an absent field differs from an empty one;
//! - `Accept-Encoding` becomes the one coding this cache would pick from
//!   [`Config::encodings`](crate::Config::encodings) (or `identity`), so there is one variant
//!   per coding, and a client is never sent a coding it did not accept.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::directives::is_tchar;

/// The field names a stored response varies on: lowercase, sorted, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vary {
    names: Vec<HeaderName>,
}

impl Vary {
    /// Reads every `Vary` line of a response. `None` when the response varies on `*` or on
    /// something that is not a field name: such a response can never be selected
    /// (RFC 9111 §4.1), so it is not worth storing.
    pub fn from_response(headers: &HeaderMap) -> Option<Vary> {
        let mut names = Vec::new();
        for line in headers.get_all(header::VARY) {
            for part in line.as_bytes().split(|&b| b == b',') {
                let part = trim(part);
                if part.is_empty() {
                    continue;
                }
                if part == b"*" {
                    return None;
                }
                names.push(HeaderName::from_bytes(part).ok()?);
            }
        }
        Some(Vary::from_names(names))
    }

    /// A `Vary` of these field names.
    pub fn from_names(names: impl IntoIterator<Item = HeaderName>) -> Vary {
        let mut names: Vec<HeaderName> = names.into_iter().collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Vary { names }
    }

    /// The field names, sorted.
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// True when the response varies on nothing.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// True when `name` is listed.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.names.contains(name)
    }

    /// Adds a field name.
    pub fn insert(&mut self, name: HeaderName) {
        if !self.contains(&name) {
            self.names.push(name);
            self.names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
    }

    /// The names as a `Vary` field value (`accept-encoding, cookie`), for keeping next to the
    /// primary key; [`Vary::from_response`] reads it back.
    pub fn to_header_value(&self) -> HeaderValue {
        let text = self
            .names
            .iter()
            .map(HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        // Field names are tokens, which HeaderValue always accepts.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The secondary key of a request for a response with a given [`Vary`]. Two requests select
/// the same stored response exactly when their keys are equal. Never contains NUL or newline
/// inside a value, so it composes with [`Key::variant`](crate::Key::variant).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VaryKey(Bytes);

impl VaryKey {
    /// The key's bytes: `name=value\n` for each listed field present, `name\n` for each absent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps bytes produced earlier by [`VaryKey::as_bytes`].
    pub fn from_bytes(bytes: Bytes) -> VaryKey {
        VaryKey(bytes)
    }

    /// True for the key of an empty `Vary`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Joins lines with commas, drops empty list members and whitespace around commas, and
/// collapses other whitespace runs to one space.
fn normalise_value<'a>(lines: impl Iterator<Item = &'a HeaderValue>, out: &mut BytesMut) {
    let mut first = true;
    for line in lines {
        for member in line.as_bytes().split(|&b| b == b',') {
            let member = trim(member);
            if member.is_empty() {
                continue;
            }
            if !first {
                out.extend_from_slice(b",");
            }
            first = false;
            let mut in_ws = false;
            for &b in member {
                if is_ws(b) {
                    in_ws = true;
                    continue;
                }
                if in_ws {
                    out.extend_from_slice(b" ");
                    in_ws = false;
                }
                out.extend_from_slice(&[b]);
            }
        }
    }
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths; `None` when malformed.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The content coding this cache picks for a request's `Accept-Encoding` lines: the coding of
/// `supported` (most preferred first) with the highest client qvalue above zero, else
/// `identity`. No `Accept-Encoding` at all also means `identity`, because a client that sends
/// none often cannot decode anything (RFC 9110 §12.5.3 allows any coding; this is the safe
/// reading for a shared cache). `x-gzip` counts as `gzip` (RFC 9110 §8.4.1.3).
pub fn pick_encoding<'a, I>(accept_encoding: I, supported: &'a [String]) -> &'a str
where
    I: IntoIterator<Item = &'a HeaderValue>,
{
    let mut offered: Vec<(String, u16)> = Vec::new();
    for line in accept_encoding {
        let Ok(text) = line.to_str() else { continue };
        for member in text.split(',') {
            let mut params = member.split(';');
            let coding = params.next().unwrap_or("").trim().to_ascii_lowercase();
            if coding.is_empty() || !coding.bytes().all(is_tchar) {
                continue;
            }
            let mut q = Some(1000);
            for p in params {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = qvalue(v.trim());
                    }
                }
            }
            let Some(q) = q else { continue };
            let coding = if coding == "x-gzip" {
                "gzip".to_owned()
            } else {
                coding
            };
            offered.push((coding, q));
        }
    }
    let q_of = |name: &str| {
        offered
            .iter()
            .find(|(c, _)| c == name)
            .or_else(|| offered.iter().find(|(c, _)| c == "*"))
            .map_or(0, |(_, q)| *q)
    };
    let mut best: Option<(&'a str, u16)> = None;
    for coding in supported {
        let q = q_of(&coding.to_ascii_lowercase());
        let better = match best {
            None => true,
            Some((_, bq)) => q > bq,
        };
        if q > 0 && better {
            best = Some((coding.as_str(), q));
        }
    }
    best.map_or("identity", |(c, _)| c)
}

/// The secondary key of `request` for `vary`, with `encodings` as in
/// [`Config::encodings`](crate::Config::encodings).
pub(crate) fn vary_key(vary: &Vary, request: &HeaderMap, encodings: &[String]) -> VaryKey {
    let mut out = BytesMut::new();
    for name in &vary.names {
        out.extend_from_slice(name.as_str().as_bytes());
        if name == header::ACCEPT_ENCODING && !encodings.is_empty() {
            out.extend_from_slice(b"=");
            out.extend_from_slice(pick_encoding(request.get_all(name), encodings).as_bytes());
        } else if request.contains_key(name) {
            out.extend_from_slice(b"=");
            normalise_value(request.get_all(name).iter(), &mut out);
        }
        out.extend_from_slice(b"\n");
    }
    VaryKey(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc() -> Vec<String> {
        vec!["br".into(), "gzip".into()]
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ae(v: &str) -> String {
        let h = req(&[("accept-encoding", v)]);
        let e = enc();
        pick_encoding(h.get_all(header::ACCEPT_ENCODING), &e).to_owned()
    }

    #[test]
    fn rfc9111_4_1_vary_star_is_never_selectable() {
        assert_eq!(Vary::from_response(&req(&[("vary", "accept, *")])), None);
        assert_eq!(Vary::from_response(&req(&[("vary", "bad name")])), None);
    }

    #[test]
    fn rfc9111_4_1_vary_names_are_case_insensitive_sorted_and_deduplicated() {
        let v = Vary::from_response(&req(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", "ACCEPT-LANGUAGE"),
        ]))
        .unwrap();
        assert_eq!(
            v.names(),
            &[header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE]
        );
        assert_eq!(
            Vary::from_response(&req(&[("vary", v.to_header_value().to_str().unwrap())])),
            Some(v)
        );
    }

    #[test]
    fn rfc9111_4_1_whitespace_normalised_values_match() {
        let v = Vary::from_names([header::ACCEPT_LANGUAGE]);
        let a = vary_key(&v, &req(&[("accept-language", "en-US,  fr;q=0.5")]), &enc());
        let b = vary_key(
            &v,
            &req(&[
                ("accept-language", "en-US"),
                ("accept-language", "fr;q=0.5 "),
            ]),
            &enc(),
        );
        assert_eq!(a, b);
        let c = vary_key(&v, &req(&[("accept-language", "fr;q=0.5, en-US")]), &enc());
        assert_ne!(a, c, "order of members is significant");
    }

    #[test]
    fn rfc9111_4_1_absent_field_only_matches_absent() {
        let v = Vary::from_names([HeaderName::from_static("x-a")]);
        let absent = vary_key(&v, &req(&[]), &enc());
        let empty = vary_key(&v, &req(&[("x-a", "")]), &enc());
        assert_ne!(absent, empty);
        assert_eq!(absent.as_bytes(), b"x-a\n");
        assert_eq!(empty.as_bytes(), b"x-a=\n");
    }

    #[test]
    fn rfc9110_12_5_3_accept_encoding_is_reduced_to_the_coding_the_cache_picks() {
        assert_eq!(ae("gzip, deflate, br"), "br");
        assert_eq!(ae("br;q=0.5, gzip"), "gzip");
        assert_eq!(ae("gzip;q=0.8, br;q=0.8"), "br");
        assert_eq!(ae("deflate"), "identity");
        assert_eq!(ae("*"), "br");
        assert_eq!(ae("*;q=0.1, br;q=0"), "gzip");
        assert_eq!(ae("x-gzip"), "gzip");
        assert_eq!(ae("GZIP ; Q=1.0"), "gzip");
        assert_eq!(ae("gzip;q=2, br;q=abc"), "identity");
        assert_eq!(ae(""), "identity");
        let e = enc();
        assert_eq!(
            pick_encoding(HeaderMap::new().get_all(header::ACCEPT_ENCODING), &e),
            "identity"
        );
    }

    #[test]
    fn accept_encoding_variants_are_one_per_coding() {
        let v = Vary::from_names([header::ACCEPT_ENCODING]);
        let a = vary_key(
            &v,
            &req(&[("accept-encoding", "gzip, deflate, br")]),
            &enc(),
        );
        let b = vary_key(&v, &req(&[("accept-encoding", "br")]), &enc());
        let c = vary_key(&v, &req(&[("accept-encoding", "gzip")]), &enc());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(c.as_bytes(), b"accept-encoding=gzip\n");
        // With normalisation off, Accept-Encoding is an ordinary field.
        let raw = vary_key(&v, &req(&[("accept-encoding", "gzip,  br")]), &[]);
        assert_eq!(raw.as_bytes(), b"accept-encoding=gzip,br\n");
    }

    proptest! {
        #[test]
        fn vary_key_is_insensitive_to_extra_whitespace_around_commas(
            members in proptest::collection::vec("[a-z0-9=;.]{1,6}", 1..5),
            pad in "[ \t]{0,3}",
        ) {
            let v = Vary::from_names([HeaderName::from_static("x-a")]);
            let tight = members.join(",");
            let loose = members.join(&format!("{pad},{pad}"));
            let a = vary_key(&v, &req(&[("x-a", &tight)]), &enc());
            let b = vary_key(&v, &req(&[("x-a", &format!("{pad}{loose}{pad}"))]), &enc());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn pick_encoding_never_panics_and_returns_supported_or_identity(s in "[ -~]{0,40}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let e = enc();
                let got = pick_encoding(std::iter::once(&v), &e);
                prop_assert!(got == "identity" || e.iter().any(|x| x == got));
            }
        }

        #[test]
        fn vary_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(header::VARY, v);
                let _ = Vary::from_response(&h);
            }
        }
    }
}
