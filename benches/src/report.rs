//! Markdown rendering of replay results: one row per cache, one column per capacity.

use std::fmt::Write as _;
use std::time::Duration;

/// Hit ratios of several caches at several capacities, ready to print as a markdown table.
#[derive(Clone, Debug, Default)]
pub struct HitTable {
    /// Column headers, one per capacity.
    pub capacities: Vec<String>,
    /// One row per cache, in insertion order.
    pub rows: Vec<HitRow>,
}

/// One cache's results across the capacities of a [`HitTable`].
#[derive(Clone, Debug)]
pub struct HitRow {
    /// The cache's name.
    pub cache: String,
    /// Hit ratio in percent at each capacity, in column order.
    pub hit_percent: Vec<f64>,
    /// Total replay time over all capacities.
    pub elapsed: Duration,
}

impl HitTable {
    /// Renders the table: hit ratios to 2 decimals, and each cache's total replay time.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| cache |");
        for c in &self.capacities {
            let _ = write!(out, " {c} |");
        }
        out.push_str(" time (s) |\n|---|");
        for _ in &self.capacities {
            out.push_str("---:|");
        }
        out.push_str("---:|\n");
        for row in &self.rows {
            let _ = write!(out, "| {} |", row.cache);
            for p in &row.hit_percent {
                let _ = write!(out, " {p:.2} |");
            }
            let _ = writeln!(out, " {:.2} |", row.elapsed.as_secs_f64());
        }
        out
    }
}

/// `n` with thousands separators: `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown_with_two_decimals() {
        let table = HitTable {
            capacities: vec!["1,000".into(), "2,000".into()],
            rows: vec![HitRow {
                cache: "lru".into(),
                hit_percent: vec![32.8251, 42.4749],
                elapsed: Duration::from_millis(1500),
            }],
        };
        assert_eq!(
            table.to_markdown(),
            "| cache | 1,000 | 2,000 | time (s) |\n|---|---:|---:|---:|\n| lru | 32.83 | 42.47 | 1.50 |\n"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(278_854_232), "278,854,232");
    }
}
