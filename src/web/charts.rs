//! Charts drawn on the server as SVG (no script, no external assets): a line chart of
//! daily series and a horizontal bar chart. Every label is escaped by maud.

use maud::{Markup, html};

/// One line of a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<i64>,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 46.0;

/// Sums hourly `(hour, value)` rows into `days` daily totals ending with the day of
/// `now` (UTC); `max` takes the day's largest value instead of the sum, and carries
/// the last value over days without a reading (a gauge).
pub fn daily(rows: &[(i64, i64)], now: i64, days: usize, gauge: bool) -> Vec<i64> {
    let today = now.div_euclid(86_400);
    let first = today - days as i64 + 1;
    let mut out: Vec<Option<i64>> = vec![None; days];
    for &(hour, v) in rows {
        let d = hour.div_euclid(24);
        if d < first || d > today {
            continue;
        }
        let slot = &mut out[(d - first) as usize];
        *slot = Some(match (*slot, gauge) {
            (None, _) => v,
            (Some(x), true) => x.max(v),
            (Some(x), false) => x + v,
        });
    }
    let mut last = 0;
    out.into_iter()
        .map(|v| match v {
            Some(x) => {
                last = x;
                x
            }
            None if gauge => last,
            None => 0,
        })
        .collect()
}

/// A rounded-up axis maximum (1, 2, 5 × 10^k).
fn nice(max: i64) -> i64 {
    let mut m = 1i64;
    loop {
        for f in [1, 2, 5] {
            if m * f >= max.max(1) {
                return m * f;
            }
        }
        m = m.saturating_mul(10);
    }
}

/// A line chart of daily series; `labels` name the days (first and last are shown).
pub fn lines(title: &str, labels: &[String], series: &[Series<'_>]) -> Markup {
    let n = labels.len().max(2);
    let max = nice(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .max()
            .unwrap_or(0),
    );
    let x = |i: usize| LEFT + (W - LEFT - 10.0) * i as f64 / (n - 1) as f64;
    let y = |v: i64| TOP + (H - TOP - BOTTOM) * (1.0 - v as f64 / max as f64);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
            title { (title) }
            text x="8" y="18" font-size="14" font-family="sans-serif" { (title) }
            line x1=(LEFT) y1=(y(0)) x2=(W - 10.0) y2=(y(0)) stroke="#999" {}
            line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y(0)) stroke="#999" {}
            text x=(LEFT - 4.0) y=(TOP + 4.0) font-size="11" text-anchor="end" font-family="sans-serif" { (max) }
            text x=(LEFT - 4.0) y=(y(0)) font-size="11" text-anchor="end" font-family="sans-serif" { "0" }
            @if let Some(f) = labels.first() {
                text x=(LEFT) y=(H - 8.0) font-size="11" font-family="sans-serif" { (f) }
            }
            @if let Some(l) = labels.last() {
                text x=(W - 10.0) y=(H - 8.0) font-size="11" text-anchor="end" font-family="sans-serif" { (l) }
            }
            @for (k, s) in series.iter().enumerate() {
                @let pts: Vec<String> = s.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
                polyline points=(pts.join(" ")) fill="none" stroke=(s.color) stroke-width="2" {}
                rect x=(LEFT + 10.0 + 120.0 * k as f64) y=(TOP - 20.0) width="10" height="10" fill=(s.color) {}
                text x=(LEFT + 24.0 + 120.0 * k as f64) y=(TOP - 11.0) font-size="11" font-family="sans-serif" {
                    (s.name) " (" (s.values.iter().sum::<i64>()) ")"
                }
            }
        }
    }
}

/// A horizontal bar chart of `(label, value)`; `fmt` writes a value.
pub fn bars(title: &str, rows: &[(String, i64)], fmt: &dyn Fn(i64) -> String) -> Markup {
    let rows = &rows[..rows.len().min(30)];
    let h = TOP + 22.0 * rows.len().max(1) as f64 + 8.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let left = 160.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(W) height=(h) viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            text x="8" y="18" font-size="14" font-family="sans-serif" { (title) }
            @for (i, (label, v)) in rows.iter().enumerate() {
                @let yy = TOP + 22.0 * i as f64;
                text x=(left - 6.0) y=(yy + 13.0) font-size="12" text-anchor="end" font-family="sans-serif" { (label) }
                rect x=(left) y=(yy) width=(((W - left - 90.0) * *v as f64 / max as f64).max(1.0)) height="16" fill="#4a78a8" {}
                text x=(left + (W - left - 90.0) * *v as f64 / max as f64 + 6.0) y=(yy + 13.0) font-size="12" font-family="sans-serif" { (fmt(*v)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_become_days() {
        let now = 100 * 86_400 + 3600;
        let rows = [
            (99 * 24 + 1, 2),
            (99 * 24 + 5, 3),
            (100 * 24, 1),
            (50 * 24, 9),
        ];
        assert_eq!(daily(&rows, now, 3, false), vec![0, 5, 1]);
        // A gauge keeps the day's maximum and carries it over silent days.
        let g = [(98 * 24, 4), (98 * 24 + 2, 6)];
        assert_eq!(daily(&g, now, 3, true), vec![6, 6, 6]);
        assert_eq!(nice(0), 1);
        assert_eq!(nice(7), 10);
        assert_eq!(nice(130), 200);
    }

    #[test]
    fn svg_escapes_labels() {
        let s = bars("Mailbox <sizes>", &[("<b>".into(), 10)], &|v| v.to_string()).into_string();
        assert!(s.starts_with("<svg") && s.contains("&lt;b&gt;") && !s.contains("<b>"));
        let l = lines(
            "Mail per day",
            &["2026-01-01".into(), "2026-01-02".into()],
            &[Series {
                name: "fetched",
                color: "#c00",
                values: vec![1, 3],
            }],
        )
        .into_string();
        assert!(l.contains("<polyline") && l.contains("fetched (4)"), "{l}");
    }
}
