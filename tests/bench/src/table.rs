//! The bench's output: one table of rows, each a measured value and, where
//! it has one, its ratio to a floor or peer measured in the same run.

use serde::Serialize;
use std::fmt::Write as _;

/// A target a row is held to: its value (or ratio) against a bound.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What the target says, e.g. "≤ floor + 2 ns".
    pub text: String,
    pub met: bool,
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The row this one is compared with, and `value / versus.value`.
    pub versus: Option<String>,
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// What bounds it or where the time goes, when known.
    pub note: Option<String>,
}

impl Row {
    pub fn new(
        section: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Row {
            section,
            name: name.into(),
            value,
            unit,
            versus: None,
            ratio: None,
            target: None,
            note: None,
        }
    }

    /// Compares with `other` (a floor or peer of the same run).
    pub fn versus(mut self, other: &Row) -> Self {
        self.versus = Some(other.name.clone());
        self.ratio = (other.value != 0.0).then(|| self.value / other.value);
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Renders rows as an aligned text table (also valid Markdown).
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.section.to_string(),
                r.name.clone(),
                format!("{} {}", fmt_value(r.value), r.unit),
                match (&r.versus, r.ratio) {
                    (Some(v), Some(x)) => format!("{x:.2}× {v}"),
                    _ => String::new(),
                },
                r.target
                    .as_ref()
                    .map(|t| format!("{} {}", if t.met { "met" } else { "MISSED" }, t.text))
                    .unwrap_or_default(),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let head = ["section", "row", "value", "ratio", "target", "note"];
    let mut width = head.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: &[String]| {
        out.push('|');
        for (s, w) in c.iter().zip(width) {
            let pad = w - s.chars().count();
            let _ = write!(out, " {s}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    line(&mut out, &head.map(String::from));
    line(&mut out, &width.map(|w| "-".repeat(w)));
    for c in &cells {
        line(&mut out, c);
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Median of `samples` (sorted in place); 0 when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// The `p` quantile (0..=1, nearest rank) of `sorted`; zero when empty.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_against_the_named_row() {
        let floor = Row::new("s", "floor", 30.0, "ns");
        let ours = Row::new("s", "ours", 33.0, "ns").versus(&floor);
        assert_eq!(ours.versus.as_deref(), Some("floor"));
        assert!((ours.ratio.unwrap() - 1.1).abs() < 1e-9);
        let text = render(&[floor, ours.target("≤ floor + 2 ns", false)]);
        assert!(text.contains("1.10× floor"), "{text}");
        assert!(text.contains("MISSED ≤ floor + 2 ns"), "{text}");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
