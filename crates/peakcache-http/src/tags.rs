//! Purge tags from the origin's `Surrogate-Key` field.

use http::header::{HeaderMap, HeaderName};

/// The tags of a response: the whitespace-separated members of every line of every field in
/// `fields` (by default `Surrogate-Key`), in order of first appearance, without repeats.
/// Bytes that are not UTF-8 are replaced by U+FFFD.
pub fn tags(headers: &HeaderMap, fields: &[HeaderName]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for field in fields {
        for line in headers.get_all(field) {
            let text = String::from_utf8_lossy(line.as_bytes());
            for tag in text.split_ascii_whitespace() {
                if !out.iter().any(|t| t == tag) {
                    out.push(tag.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn sk() -> Vec<HeaderName> {
        vec![HeaderName::from_static("surrogate-key")]
    }

    #[test]
    fn surrogate_key_is_space_separated_over_several_lines() {
        let mut h = HeaderMap::new();
        h.append(
            "surrogate-key",
            HeaderValue::from_static("  product/1 \tcategory/shoes "),
        );
        h.append("surrogate-key", HeaderValue::from_static("product/1 all"));
        assert_eq!(tags(&h, &sk()), vec!["product/1", "category/shoes", "all"]);
        assert!(tags(&HeaderMap::new(), &sk()).is_empty());
    }

    proptest! {
        #[test]
        fn tags_are_the_distinct_words(words in proptest::collection::vec("[a-z0-9/_-]{1,8}", 0..10)) {
            let mut h = HeaderMap::new();
            if !words.is_empty() {
                h.insert("surrogate-key", HeaderValue::from_str(&words.join("  ")).unwrap());
            }
            let got = tags(&h, &sk());
            let mut want: Vec<String> = Vec::new();
            for w in words { if !want.contains(&w) { want.push(w); } }
            prop_assert_eq!(got, want);
        }
    }
}
