//! A hand-written SVG line chart: stacked panels sharing a time axis, per-second step lines
//! on a log scale (so 300 requests/s and 30,000 requests/s both read), shaded bands for the
//! phases and labelled markers.

use std::fmt::Write as _;

/// One line: a value per second, bucket `i` covering `[i, i+1)` seconds.
#[derive(Debug, Clone)]
pub struct Series {
    /// A stable identifier, written as the polyline's `id` (e.g. `visitors-direct`).
    pub id: String,
    /// The legend text.
    pub label: String,
    /// Any SVG colour.
    pub color: String,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// The values, one per second.
    pub values: Vec<f64>,
}

/// One panel: a title, a y-axis label and its lines.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Written above the panel.
    pub title: String,
    /// Written along the y axis.
    pub y_label: String,
    /// The lines, drawn in order, listed in the legend in order.
    pub series: Vec<Series>,
}

/// A shaded stretch of time, drawn across every panel (e.g. "origin down").
#[derive(Debug, Clone)]
pub struct Band {
    /// Start, seconds.
    pub from: f64,
    /// End, seconds.
    pub to: f64,
    /// Written at the top of the first panel.
    pub label: String,
}

/// A vertical line at one instant, drawn across every panel.
#[derive(Debug, Clone)]
pub struct Marker {
    /// When, seconds.
    pub at: f64,
    /// Written at the top of the first panel.
    pub label: String,
}

/// The whole chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The heading.
    pub title: String,
    /// A line under the heading (parameters of the run).
    pub subtitle: String,
    /// The time axis label.
    pub x_label: String,
    /// The time axis runs from 0 to this many seconds.
    pub x_max: f64,
    /// Shaded stretches.
    pub bands: Vec<Band>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// Panels, top to bottom.
    pub panels: Vec<Panel>,
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick label: `0`, `1`, `10`, `100`, `1k`, `10k`, `100k`, `1M`, ...
fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const HEADER: f64 = 70.0;
const PANEL_TITLE: f64 = 52.0;
const PANEL_PLOT: f64 = 220.0;
const PANEL_GAP: f64 = 40.0;
const FOOTER: f64 = 30.0;

/// Renders the chart as a standalone SVG document.
pub fn render(chart: &Chart) -> String {
    let n = chart.panels.len().max(1) as f64;
    let height = HEADER + n * (PANEL_TITLE + PANEL_PLOT + PANEL_GAP) + FOOTER;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x_max = if chart.x_max > 0.0 { chart.x_max } else { 1.0 };
    let x = |t: f64| LEFT + plot_w * (t.clamp(0.0, x_max) / x_max);
    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="28" font-size="18" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="48" fill="#555">{}</text>"##,
        escape(&chart.subtitle)
    );

    let step = if x_max <= 20.0 {
        2.0
    } else if x_max <= 60.0 {
        5.0
    } else {
        10.0
    };
    for (pi, panel) in chart.panels.iter().enumerate() {
        let top = HEADER + pi as f64 * (PANEL_TITLE + PANEL_PLOT + PANEL_GAP) + PANEL_TITLE;
        let bottom = top + PANEL_PLOT;
        let max = panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0f64, f64::max);
        let mut top_tick = 10.0f64;
        while top_tick < max {
            top_tick *= 10.0;
        }
        let y_top = (1.0 + top_tick).log10();
        let y = |v: f64| bottom - PANEL_PLOT * ((1.0 + v.max(0.0)).log10() / y_top);

        let _ = writeln!(o, r#"<g class="panel" id="panel-{pi}">"#);
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            top - 34.0,
            escape(&panel.title)
        );
        // Bands and markers under the lines.
        for b in &chart.bands {
            let _ = writeln!(
                o,
                r##"<rect class="band" x="{:.1}" y="{top}" width="{:.1}" height="{PANEL_PLOT}" fill="#d62728" fill-opacity="0.09"/>"##,
                x(b.from),
                (x(b.to) - x(b.from)).max(0.0)
            );
            if pi == 0 {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{}" fill="#b22222" text-anchor="middle" font-weight="bold">{}</text>"##,
                    (x(b.from) + x(b.to)) / 2.0,
                    top + 16.0,
                    escape(&b.label)
                );
            }
        }
        for m in &chart.markers {
            let _ = writeln!(
                o,
                r##"<line class="marker" x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#888" stroke-dasharray="2,3"/>"##,
                x(m.at)
            );
            if pi == 0 {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{}" fill="#555" font-size="11">{}</text>"##,
                    x(m.at) + 4.0,
                    top + 32.0,
                    escape(&m.label)
                );
            }
        }
        // Grid and y ticks: 0, 1, 10, 100, ...
        let mut t = 0.0;
        loop {
            let yy = y(t);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                yy + 4.0,
                tick_label(t)
            );
            if t >= top_tick {
                break;
            }
            t = if t == 0.0 { 1.0 } else { t * 10.0 };
        }
        // X ticks.
        let mut tx = 0.0;
        while tx <= x_max + 1e-9 {
            let xx = x(tx);
            let _ = writeln!(
                o,
                r##"<line x1="{xx:.1}" y1="{bottom}" x2="{xx:.1}" y2="{}" stroke="#333"/><text x="{xx:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
                bottom + 5.0,
                bottom + 18.0,
                tx
            );
            tx += step;
        }
        // Axes.
        let _ = writeln!(
            o,
            r##"<path d="M{LEFT},{top} V{bottom} H{:.1}" fill="none" stroke="#333"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            o,
            r##"<text transform="translate({},{:.1}) rotate(-90)" text-anchor="middle" fill="#333">{}</text>"##,
            LEFT - 52.0,
            (top + bottom) / 2.0,
            escape(&panel.y_label)
        );
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            LEFT + plot_w / 2.0,
            bottom + 34.0,
            escape(&chart.x_label)
        );
        // The lines, as steps.
        for s in &panel.series {
            let mut pts = String::new();
            for (i, &v) in s.values.iter().enumerate() {
                let (x0, x1) = (i as f64, (i + 1) as f64);
                if x0 >= x_max {
                    break;
                }
                let yy = y(v);
                let _ = write!(pts, "{:.1},{yy:.1} {:.1},{yy:.1} ", x(x0), x(x1));
            }
            let _ = writeln!(
                o,
                r#"<polyline class="series" id="{}" points="{}" fill="none" stroke="{}" stroke-width="2"{} stroke-linejoin="round"/>"#,
                escape(&s.id),
                pts.trim_end(),
                escape(&s.color),
                if s.dashed {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                }
            );
        }
        // Legend: one row between the title and the plot.
        let mut lx = LEFT;
        let ly = top - 12.0;
        for s in &panel.series {
            let _ = writeln!(
                o,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 4.0,
                lx + 26.0,
                ly - 4.0,
                escape(&s.color),
                if s.dashed {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                },
                lx + 32.0,
                escape(&s.label)
            );
            lx += 32.0 + 6.5 * s.label.chars().count() as f64 + 22.0;
        }
        let _ = writeln!(o, "</g>");
    }
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: every tag closed in order, attributes quoted, no raw `<`
    /// or stray `&` in text. Returns the element names in document order.
    fn check_well_formed(doc: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = doc;
        let check_text = |t: &str| -> Result<(), String> {
            let mut parts = t.split('&');
            parts.next();
            for p in parts {
                let ent = p.split(';').next().unwrap_or("");
                if !matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos") || !p.contains(';') {
                    return Err(format!("bad entity near {p:.20}"));
                }
            }
            Ok(())
        };
        while let Some(i) = rest.find('<') {
            check_text(&rest[..i])?;
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("<?") {
                rest = &r[r.find("?>").ok_or("unclosed <?")? + 2..];
                continue;
            }
            let end = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if tag.contains('<') {
                return Err(format!("'<' inside tag {tag:.40}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or("close without open")?;
                if open != name.trim() {
                    return Err(format!("</{name}> closes <{open}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_owned();
            // Attributes: name="value" pairs only.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or_else(|| format!("unquoted attribute in <{name}>"))?;
                let close = attrs[eq + 2..].find('"').ok_or("unterminated attribute")?;
                check_text(&attrs[eq + 2..eq + 2 + close])?;
                attrs = attrs[eq + 2 + close + 1..].trim_start();
            }
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest)?;
        if stack.is_empty() {
            Ok(names)
        } else {
            Err(format!("unclosed elements {stack:?}"))
        }
    }

    fn series(id: &str, values: Vec<f64>) -> Series {
        Series {
            id: id.into(),
            label: format!("{id} <&>"),
            color: "#1b9e77".into(),
            dashed: id.ends_with("errors"),
            values,
        }
    }

    #[test]
    fn renders_a_well_formed_document_with_every_series() {
        let chart = Chart {
            title: "peakcache & a \"campaign\" peak".into(),
            subtitle: "300 visitors <loopback>".into(),
            x_label: "seconds since the campaign went live".into(),
            x_max: 17.0,
            bands: vec![Band {
                from: 8.0,
                to: 14.0,
                label: "origin down".into(),
            }],
            markers: vec![Marker {
                at: 0.0,
                label: "campaign goes live".into(),
            }],
            panels: vec![
                Panel {
                    title: "visitor requests/s".into(),
                    y_label: "requests/s".into(),
                    series: vec![
                        series("visitors-direct", vec![300.0; 17]),
                        series("visitors-peakcache", vec![45_000.0; 17]),
                        series("visitors-direct-errors", vec![0.0, 0.0, 250.0]),
                    ],
                },
                Panel {
                    title: "origin requests/s".into(),
                    y_label: "requests/s".into(),
                    series: vec![
                        series("origin-direct", vec![320.0; 20]),
                        series("origin-peakcache", vec![]),
                    ],
                },
            ],
        };
        let doc = render(&chart);
        let names = check_well_formed(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 5);
        for id in [
            "visitors-direct",
            "visitors-peakcache",
            "visitors-direct-errors",
            "origin-direct",
            "origin-peakcache",
        ] {
            assert!(
                doc.contains(&format!(r#"<polyline class="series" id="{id}""#)),
                "{id}"
            );
        }
        // The legend names every series, escaped.
        assert!(doc.contains("visitors-peakcache &lt;&amp;&gt;"));
        assert!(doc.contains("peakcache &amp; a &quot;campaign&quot; peak"));
        // A 17-point series is 34 step points; values past x_max are cut.
        let line = doc
            .lines()
            .find(|l| l.contains(r#"id="origin-direct""#))
            .unwrap();
        let pts = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split(' ').count(), 34);
        // The 45,000/s series gets a 100k tick.
        assert!(doc.contains(">100k</text>"));
        assert_eq!(doc.matches(r#"class="band""#).count(), 2);
    }

    #[test]
    fn the_checker_catches_broken_documents() {
        assert!(check_well_formed("<a><b></a></b>").is_err());
        assert!(check_well_formed("<a>x & y</a>").is_err());
        assert!(check_well_formed("<a x=1/>").is_err());
        assert!(check_well_formed("<a>").is_err());
        assert!(check_well_formed("<a x=\"&amp;\"><b/></a>").is_ok());
    }
}
