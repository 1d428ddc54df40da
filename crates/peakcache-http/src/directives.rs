//! The one parser for `Cache-Control`, the targeted fields of RFC 9213 (`CDN-Cache-Control`)
//! and `Surrogate-Control`.
//!
//! The three fields carry the same directives with slightly different syntax: `Cache-Control`
//! is a comma list of `token[=token|quoted-string]` (RFC 9111 §5.2), `CDN-Cache-Control` is a
//! Structured Fields dictionary (RFC 8941 §3.2) whose members may carry `;parameters` and
//! Boolean values `?0`/`?1`. [`Directives::parse`] reads both styles and never fails: what it
//! cannot read becomes a directive with an unusable value (so a numeric directive reads as
//! [`Delta::Invalid`], which RFC 9111 §4.2.1 says to treat as stale) and sets
//! [`Directives::is_malformed`], which decides whether a targeted field is used at all.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Which syntax a field is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `Cache-Control` and `Surrogate-Control`: RFC 9111 §5.2 `cache-directive` lists.
    CacheControl,
    /// Targeted fields (RFC 9213 §2.1): Structured Fields dictionaries, with `Cache-Control`
    /// style also accepted. Member parameters are ignored, a `?0` value removes the member
    /// and a `?1` value is the same as no value.
    Targeted,
}

/// The greatest delta-seconds value kept: RFC 9111 §1.2.2 says a larger value, or an overflow,
/// is taken as 2^31.
pub const DELTA_SECONDS_MAX: u32 = 1 << 31;

/// The value of a delta-seconds directive such as `max-age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta {
    /// A valid value in seconds, saturated at [`DELTA_SECONDS_MAX`].
    Seconds(u32),
    /// Present but unusable: no value, not all digits, or repeated with different values.
    /// RFC 9111 §4.2.1 encourages treating the response as stale.
    Invalid,
}

impl Delta {
    /// The value as a `Duration`, zero when invalid.
    pub fn duration_or_zero(self) -> std::time::Duration {
        match self {
            Delta::Seconds(s) => std::time::Duration::from_secs(u64::from(s)),
            Delta::Invalid => std::time::Duration::ZERO,
        }
    }
}

/// What a `private` or `no-cache` directive applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldScope {
    /// The unqualified form: the whole response.
    All,
    /// The qualified form (`private="Set-Cookie"`): only these header fields.
    Fields(Vec<HeaderName>),
}

/// One directive: a lowercased name and its unquoted value, if it had one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Directive {
    name: String,
    value: Option<String>,
}

impl Directive {
    /// A directive named `name` (lowercased, as directive names compare case-insensitively)
    /// with an optional value.
    pub fn new(name: impl Into<String>, value: Option<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        Directive { name, value }
    }

    /// The lowercased name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value with quotes and escapes removed; `None` when the directive had no `=`.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Display for Directive {
    /// Formats as `name`, `name=token` or `name="quoted \" string"`, which
    /// [`Directives::parse`] reads back to an equal directive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(v) = &self.value {
            if !v.is_empty() && v.bytes().all(is_tchar) {
                write!(f, "={v}")?;
            } else {
                f.write_str("=\"")?;
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

/// The directives of one field, in order, with repeats kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    list: Vec<Directive>,
    malformed: bool,
}

impl Directives {
    /// No directives.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every line of field `name` in `headers`, as if the lines were joined with commas
    /// (RFC 9110 §5.3). Never fails.
    pub fn from_headers(headers: &HeaderMap, name: &HeaderName, syntax: Syntax) -> Self {
        Self::parse(headers.get_all(name), syntax)
    }

    /// Parses field lines, as if they were joined with commas. Never fails and never panics:
    /// unreadable parts are kept as unusable values and flagged by [`Directives::is_malformed`].
    pub fn parse<'a, I>(lines: I, syntax: Syntax) -> Self
    where
        I: IntoIterator<Item = &'a HeaderValue>,
    {
        let mut out = Directives::new();
        for line in lines {
            parse_into(&mut out, line.as_bytes(), syntax);
        }
        out
    }

    /// Parses one field value given as bytes; see [`Directives::parse`].
    pub fn parse_bytes(value: &[u8], syntax: Syntax) -> Self {
        let mut out = Directives::new();
        parse_into(&mut out, value, syntax);
        out
    }

    /// Appends a directive.
    pub fn push(&mut self, directive: Directive) {
        self.list.push(directive);
    }

    /// True when there are no directives.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The number of directives, repeats included.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The directives in the order they were received.
    pub fn iter(&self) -> impl Iterator<Item = &Directive> {
        self.list.iter()
    }

    /// True when some part of the field did not follow the grammar (an unterminated quoted
    /// string, a member that is not a token, text after a value). The readable directives are
    /// still there. For a targeted field this makes the whole field ignored (RFC 9213 §2.1).
    pub fn is_malformed(&self) -> bool {
        self.malformed
    }

    /// True when a directive named `name` (lowercase) is present.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|d| d.name == name)
    }

    /// The value of the first directive named `name` (lowercase), if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|d| d.name == name)
            .and_then(Directive::value)
    }

    /// The delta-seconds value of directive `name` (lowercase); `None` when absent.
    ///
    /// Both token and quoted forms are accepted (RFC 9111 §5.2). Repeats with different values
    /// make it [`Delta::Invalid`]: RFC 9111 §4.2.1 allows either the first occurrence or
    /// staleness, and staleness is the choice that agrees whether the field is read as
    /// `Cache-Control` (first wins) or as a Structured Field (last wins).
    pub fn seconds(&self, name: &str) -> Option<Delta> {
        let mut found: Option<Delta> = None;
        for d in self.list.iter().filter(|d| d.name == name) {
            let this = d.value.as_deref().map_or(Delta::Invalid, parse_delta);
            found = Some(match found {
                None => this,
                Some(prev) if prev == this => prev,
                Some(_) => Delta::Invalid,
            });
        }
        found
    }

    /// The scope of a `private` or `no-cache` style directive `name`; `None` when absent.
    /// Any unqualified occurrence, or a field list that cannot be read, means
    /// [`FieldScope::All`]: the restrictive reading (RFC 9111 §4.2.1).
    pub fn scope(&self, name: &str) -> Option<FieldScope> {
        let mut fields: Option<Vec<HeaderName>> = None;
        for d in self.list.iter().filter(|d| d.name == name) {
            let Some(value) = d.value.as_deref() else {
                return Some(FieldScope::All);
            };
            let list = fields.get_or_insert_with(Vec::new);
            let mut any = false;
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match HeaderName::from_bytes(part.as_bytes()) {
                    Ok(n) => {
                        any = true;
                        if !list.contains(&n) {
                            list.push(n);
                        }
                    }
                    Err(_) => return Some(FieldScope::All),
                }
            }
            if !any {
                return Some(FieldScope::All);
            }
        }
        fields.map(FieldScope::Fields)
    }

    /// `no-store` (RFC 9111 §5.2.2.5, §5.2.1.5 in requests).
    pub fn no_store(&self) -> bool {
        self.has("no-store")
    }

    /// `no-cache`, qualified or not (RFC 9111 §5.2.2.4).
    pub fn no_cache(&self) -> Option<FieldScope> {
        self.scope("no-cache")
    }

    /// `private`, qualified or not (RFC 9111 §5.2.2.7).
    pub fn private(&self) -> Option<FieldScope> {
        self.scope("private")
    }

    /// `public` (RFC 9111 §5.2.2.9).
    pub fn public(&self) -> bool {
        self.has("public")
    }

    /// `must-revalidate` (RFC 9111 §5.2.2.2).
    pub fn must_revalidate(&self) -> bool {
        self.has("must-revalidate")
    }

    /// `proxy-revalidate` (RFC 9111 §5.2.2.8).
    pub fn proxy_revalidate(&self) -> bool {
        self.has("proxy-revalidate")
    }

    /// `must-understand` (RFC 9111 §5.2.2.3).
    pub fn must_understand(&self) -> bool {
        self.has("must-understand")
    }

    /// `max-age` (RFC 9111 §5.2.2.1).
    pub fn max_age(&self) -> Option<Delta> {
        self.seconds("max-age")
    }

    /// `s-maxage` (RFC 9111 §5.2.2.10).
    pub fn s_maxage(&self) -> Option<Delta> {
        self.seconds("s-maxage")
    }

    /// `stale-while-revalidate` (RFC 5861 §3).
    pub fn stale_while_revalidate(&self) -> Option<Delta> {
        self.seconds("stale-while-revalidate")
    }

    /// `stale-if-error` (RFC 5861 §4).
    pub fn stale_if_error(&self) -> Option<Delta> {
        self.seconds("stale-if-error")
    }
}

impl fmt::Display for Directives {
    /// Formats as a `Cache-Control` field value, `a, b=1, c="x y"`, which parses back to equal
    /// directives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.list.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl FromIterator<Directive> for Directives {
    fn from_iter<T: IntoIterator<Item = Directive>>(iter: T) -> Self {
        Directives {
            list: iter.into_iter().collect(),
            malformed: false,
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The directives whose value is delta-seconds, an Integer in a targeted field.
const DELTA_DIRECTIVES: [&str; 5] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
    "max-stale",
];

/// RFC 8941 §3.2 `key`: a lowercase letter or `*` first, then lowercase letters, digits, `_`,
/// `-`, `.` or `*`. Upper case is accepted too: directive names compare case-insensitively
/// (RFC 9111 §5.2), and a field that differs only in case means the same.
fn is_sf_key(name: &[u8]) -> bool {
    name.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'*')
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.*".contains(c))
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9111 §1.2.2 delta-seconds: digits only, saturating at 2^31.
pub(crate) fn parse_delta(s: &str) -> Delta {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Delta::Invalid;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 10 + u64::from(b - b'0');
        if n >= u64::from(DELTA_SECONDS_MAX) {
            return Delta::Seconds(DELTA_SECONDS_MAX);
        }
    }
    // n < 2^31 here, so the conversion cannot fail.
    Delta::Seconds(u32::try_from(n).unwrap_or(DELTA_SECONDS_MAX))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Index of the next top-level comma at or after `i` (or the end), skipping quoted strings.
fn skip_to_comma(b: &[u8], mut i: usize) -> usize {
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Reads a quoted string starting at the opening quote `b[i]`. Returns the unescaped text,
/// the index after the closing quote, and whether the closing quote was found.
fn quoted(b: &[u8], mut i: usize) -> (String, usize, bool) {
    let mut out = Vec::new();
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if let Some(&c) = b.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            b'"' => return (lossy(&out), i + 1, true),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (lossy(&out), b.len(), false)
}

fn parse_into(out: &mut Directives, b: &[u8], syntax: Syntax) {
    let mut i = 0;
    while i < b.len() {
        // Empty list elements and surrounding whitespace are allowed (RFC 9110 §5.6.1).
        while i < b.len() && (is_ows(b[i]) || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            out.malformed = true;
            i = skip_to_comma(b, i);
            continue;
        }
        let name = lossy(&b[start..i]).to_ascii_lowercase();
        if syntax == Syntax::Targeted && !is_sf_key(&b[start..i]) {
            // Not a Structured Fields key (RFC 8941 §3.2): a parsing error.
            out.malformed = true;
            i = skip_to_comma(b, i);
            continue;
        }
        let ows_before = i;
        while i < b.len() && is_ows(b[i]) {
            i += 1;
        }
        let mut value: Option<String> = None;
        // Booleans only exist in the Structured Fields syntax.
        let mut sf_false = false;
        if i < b.len() && b[i] == b'=' {
            // A Structured Fields dictionary has no whitespace around `=` (RFC 8941 §4.2.2).
            if syntax == Syntax::Targeted && i > ows_before {
                out.malformed = true;
            }
            i += 1;
            let ows_after = i;
            while i < b.len() && is_ows(b[i]) {
                i += 1;
            }
            if syntax == Syntax::Targeted && i > ows_after {
                out.malformed = true;
            }
            if i < b.len() && b[i] == b'"' {
                let (text, next, closed) = quoted(b, i);
                if !closed {
                    out.malformed = true;
                }
                // A String where the directive takes an Integer violates the inferred type,
                // which RFC 9213 §2.1 says not to consume: the field is not used.
                if syntax == Syntax::Targeted && DELTA_DIRECTIVES.contains(&name.as_str()) {
                    out.malformed = true;
                }
                value = Some(text);
                i = next;
            } else {
                let vstart = i;
                while i < b.len() && !is_ows(b[i]) && b[i] != b',' && b[i] != b';' {
                    i += 1;
                }
                let raw = &b[vstart..i];
                match (syntax, raw) {
                    (Syntax::Targeted, b"?0") => sf_false = true,
                    (Syntax::Targeted, b"?1") => {}
                    _ => value = Some(lossy(raw)),
                }
            }
        }
        while i < b.len() && is_ows(b[i]) {
            i += 1;
        }
        if i < b.len() && b[i] != b',' {
            let params = syntax == Syntax::Targeted && b[i] == b';';
            let end = skip_to_comma(b, i);
            if !params {
                // Text after the value: keep it in the value so a numeric directive reads as
                // invalid rather than as the number before the junk.
                out.malformed = true;
                let junk = lossy(&b[i..end]);
                let v = value.get_or_insert_with(String::new);
                v.push(' ');
                v.push_str(junk.trim_end());
            }
            i = end;
        }
        if !sf_false {
            out.list.push(Directive { name, value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cc(s: &str) -> Directives {
        Directives::parse_bytes(s.as_bytes(), Syntax::CacheControl)
    }

    fn targeted(s: &str) -> Directives {
        Directives::parse_bytes(s.as_bytes(), Syntax::Targeted)
    }

    #[test]
    fn rfc9111_5_2_names_are_case_insensitive_and_whitespace_is_tolerated() {
        let d = cc("  Max-Age = 60 ,PUBLIC,\tNo-Transform  ");
        assert_eq!(d.max_age(), Some(Delta::Seconds(60)));
        assert!(d.public());
        assert!(d.has("no-transform"));
        assert!(!d.is_malformed());
    }

    #[test]
    fn rfc9111_5_2_token_and_quoted_forms_are_both_accepted() {
        assert_eq!(cc("max-age=\"60\"").max_age(), Some(Delta::Seconds(60)));
        assert_eq!(cc("s-maxage=30").s_maxage(), Some(Delta::Seconds(30)));
    }

    #[test]
    fn rfc9111_4_2_1_invalid_max_age_is_invalid_not_absent() {
        for bad in [
            "max-age=abc",
            "max-age=",
            "max-age",
            "max-age=-1",
            "max-age=6.5",
            "max-age=\" 6\"",
        ] {
            assert_eq!(cc(bad).max_age(), Some(Delta::Invalid), "{bad}");
        }
    }

    #[test]
    fn rfc9111_4_2_1_junk_after_a_value_makes_it_invalid() {
        let d = cc("max-age=60 junk, public");
        assert_eq!(d.max_age(), Some(Delta::Invalid));
        assert!(d.public());
        assert!(d.is_malformed());
    }

    #[test]
    fn rfc9111_4_2_1_conflicting_duplicates_are_invalid_equal_ones_are_kept() {
        assert_eq!(
            cc("max-age=60, max-age=120").max_age(),
            Some(Delta::Invalid)
        );
        assert_eq!(
            cc("max-age=60, max-age=\"60\"").max_age(),
            Some(Delta::Seconds(60))
        );
    }

    #[test]
    fn rfc9111_1_2_2_delta_seconds_saturate_at_2_pow_31() {
        assert_eq!(
            cc("max-age=99999999999999999999999").max_age(),
            Some(Delta::Seconds(DELTA_SECONDS_MAX))
        );
        assert_eq!(
            cc("max-age=2147483647").max_age(),
            Some(Delta::Seconds(2_147_483_647))
        );
    }

    #[test]
    fn rfc9110_5_3_multiple_lines_combine_like_commas() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public"),
        );
        h.append(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10"),
        );
        let d = Directives::from_headers(&h, &http::header::CACHE_CONTROL, Syntax::CacheControl);
        assert!(d.public());
        assert_eq!(d.max_age(), Some(Delta::Seconds(10)));
    }

    #[test]
    fn rfc9111_5_2_2_7_qualified_private_lists_fields_with_commas_inside_quotes() {
        let d = cc("private=\"Set-Cookie, X-User\", max-age=5");
        assert_eq!(
            d.private(),
            Some(FieldScope::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-user")
            ]))
        );
        assert_eq!(d.max_age(), Some(Delta::Seconds(5)));
        assert_eq!(cc("private").private(), Some(FieldScope::All));
        assert_eq!(cc("private=\"\"").private(), Some(FieldScope::All));
        assert_eq!(cc("private=\"bad name\"").private(), Some(FieldScope::All));
        assert_eq!(cc("private=x, private").private(), Some(FieldScope::All));
    }

    #[test]
    fn rfc9111_5_2_unterminated_quote_is_malformed_and_never_panics() {
        let d = cc("no-cache=\"set-cookie, max-age=60");
        assert!(d.is_malformed());
        assert!(d.has("no-cache"));
        assert_eq!(d.max_age(), None);
    }

    #[test]
    fn rfc9213_2_1_structured_field_parameters_and_booleans() {
        let d = targeted("max-age=60;foo=bar, no-store=?0, must-revalidate=?1");
        assert_eq!(d.max_age(), Some(Delta::Seconds(60)));
        assert!(!d.no_store());
        assert!(d.must_revalidate());
        assert_eq!(d.value("must-revalidate"), None);
        assert!(!d.is_malformed());
        // In Cache-Control syntax parameters are junk.
        assert_eq!(cc("max-age=60;foo").max_age(), Some(Delta::Invalid));
    }

    #[test]
    fn rfc9213_2_1_cache_control_style_is_accepted_in_targeted_fields() {
        let d = targeted("Max-Age=60, private=\"set-cookie\"");
        assert_eq!(d.max_age(), Some(Delta::Seconds(60)));
        assert!(!d.is_malformed());
        assert!(matches!(d.private(), Some(FieldScope::Fields(_))));
    }

    #[test]
    fn rfc9213_2_1_structured_field_errors_make_a_targeted_field_malformed() {
        for bad in [
            "max-age=10000, &&&&&",
            "max-age =100",
            "max-age= 100",
            "max-age=\"10000\"",
            "s-maxage=\"5\"",
        ] {
            assert!(targeted(bad).is_malformed(), "{bad}");
        }
        // The same text in Cache-Control is read as far as it goes (RFC 9111 §5.2).
        assert_eq!(cc("max-age =100").max_age(), Some(Delta::Seconds(100)));
        assert_eq!(cc("max-age=\"100\"").max_age(), Some(Delta::Seconds(100)));
        // Strings stay fine where a directive takes one.
        assert!(!targeted("private=\"x-user\", max-age=60, *ext=1").is_malformed());
    }

    #[test]
    fn non_token_members_are_skipped_and_flagged() {
        let d = cc("\"weird\", =5, public");
        assert!(d.public());
        assert_eq!(d.len(), 1);
        assert!(d.is_malformed());
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let d: Directives = [
            Directive::new("Max-Age", Some("60".into())),
            Directive::new("private", Some("a, b".into())),
            Directive::new("x", Some("q\"\\".into())),
            Directive::new("public", None),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            d.to_string(),
            "max-age=60, private=\"a, b\", x=\"q\\\"\\\\\", public"
        );
    }

    fn directive() -> impl Strategy<Value = Directive> {
        ("[a-z][a-z0-9-]{0,12}", proptest::option::of("[ -~]{0,12}"))
            .prop_map(|(n, v)| Directive::new(n, v))
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let a = Directives::parse_bytes(&bytes, Syntax::CacheControl);
            let b = Directives::parse_bytes(&bytes, Syntax::Targeted);
            for d in [a, b] {
                let _ = d.max_age();
                let _ = d.private();
                let _ = d.no_cache();
                let _ = d.to_string();
            }
        }

        #[test]
        fn parser_never_panics_on_directive_like_text(s in "[a-zA-Z=,;\"\\\\ ?0-9-]{0,80}") {
            let d = Directives::parse_bytes(s.as_bytes(), Syntax::Targeted);
            let _ = d.s_maxage();
        }

        #[test]
        fn format_then_parse_round_trips(list in proptest::collection::vec(directive(), 0..8)) {
            let d: Directives = list.into_iter().collect();
            let text = d.to_string();
            let back = Directives::parse_bytes(text.as_bytes(), Syntax::CacheControl);
            prop_assert!(!back.is_malformed(), "{}", text);
            prop_assert_eq!(&back, &d);
            // The same text read as a targeted field (RFC 9213) means the same.
            let targeted = Directives::parse_bytes(text.as_bytes(), Syntax::Targeted);
            prop_assert_eq!(targeted, d);
        }

        #[test]
        fn delta_seconds_round_trip(n in 0u32..DELTA_SECONDS_MAX) {
            prop_assert_eq!(cc(&format!("max-age={n}")).max_age(), Some(Delta::Seconds(n)));
        }
    }
}
