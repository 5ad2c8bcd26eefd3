//! PromQL selectors and the Prometheus text format, as far as the monitoring test needs
//! them: which series an expression selects (with the label names it matches on), and
//! whether one scrape of `/metrics` exports them.

use std::collections::{BTreeMap, BTreeSet};

/// Series Prometheus makes itself, not scraped from Ferry, with the labels they carry.
const PROMETHEUS_OWN: &[(&str, &[&str])] = &[
    ("up", &["job", "instance"]),
    (
        "ALERTS",
        &["alertname", "alertstate", "severity", "service", "instance"],
    ),
];
/// Labels Prometheus attaches to every scraped series (the target's).
const TARGET_LABELS: &[&str] = &["job", "instance"];
/// Words of PromQL that look like identifiers but name no series.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];
/// Modifiers followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// One series selector found in an expression: `name{label op "value", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<String>,
}

fn skip_quoted(c: &[char], mut i: usize) -> usize {
    let quote = c[i];
    i += 1;
    while i < c.len() && c[i] != quote {
        i += if c[i] == '\\' && quote != '`' { 2 } else { 1 };
    }
    i + 1
}

/// The label names of a `{...}` block starting at `c[i]`, and the index after it.
fn matchers(c: &[char], mut i: usize) -> (Vec<String>, usize) {
    let (mut labels, mut expect_label) = (Vec::new(), true);
    i += 1;
    while i < c.len() && c[i] != '}' {
        match c[i] {
            '"' | '\'' | '`' => i = skip_quoted(c, i),
            ',' => {
                expect_label = true;
                i += 1;
            }
            ch if expect_label && (ch.is_ascii_alphabetic() || ch == '_') => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                labels.push(c[start..i].iter().collect());
                expect_label = false;
            }
            _ => i += 1,
        }
    }
    (labels, i + 1)
}

/// Whether `c[i..]` starts with `by` or `without` and then `(`.
fn followed_by_grouping(c: &[char], i: usize) -> bool {
    ["by", "without"].iter().any(|kw| {
        let end = i + kw.len();
        c.get(i..end)
            .is_some_and(|w| w.iter().copied().eq(kw.chars()))
            && c[end..].iter().find(|ch| !ch.is_whitespace()) == Some(&'(')
    })
}

/// Every series selector of a PromQL expression: identifiers that are not functions or
/// aggregations (followed by `(`), keywords, label names in grouping lists or matchers,
/// numbers and durations, strings, or Grafana variables (`$service`, `$__rate_interval`).
pub fn selectors(expr: &str) -> Vec<Selector> {
    let c: Vec<char> = expr.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    let next_non_space = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < c.len() {
        let ch = c[i];
        if matches!(ch, '"' | '\'' | '`') {
            i = skip_quoted(&c, i);
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '[' {
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
        } else if ch == '{' {
            i = matchers(&c, i).1; // `{__name__=...}` alone: not used in these files
        } else if ch == '$'
            || ch.is_ascii_digit()
            || (ch == '.' && i + 1 < c.len() && c[i + 1].is_ascii_digit())
        {
            i += 1;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || matches!(c[i], '_' | '.')) {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || matches!(c[i], '_' | ':')) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = next_non_space(i);
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if c.get(next) == Some(&'(') {
                    i = next;
                    while i < c.len() && c[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || c.get(next) == Some(&'(')
                || followed_by_grouping(&c, next)
            {
                // a keyword, a function or aggregation called here, or an aggregation
                // whose `by (...)` / `without (...)` comes before its argument
            } else {
                let labels = if c.get(next) == Some(&'{') {
                    let (labels, after) = matchers(&c, next);
                    i = after;
                    labels
                } else {
                    Vec::new()
                };
                out.push(Selector { name: word, labels });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// What one scrape of /metrics exports: family name -> type, and sample name -> labels.
pub struct Exported {
    pub families: BTreeMap<String, String>,
    sample_labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exported {
    pub fn parse(text: &str) -> Self {
        let mut families = BTreeMap::new();
        let mut sample_labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let sel = selectors(line); // the value and timestamp are numbers, Inf or NaN
                let first = sel
                    .into_iter()
                    .next()
                    .expect("a sample line starts with its name");
                sample_labels
                    .entry(first.name)
                    .or_default()
                    .extend(first.labels);
            }
        }
        Self {
            families,
            sample_labels,
        }
    }

    /// Whether `name` is a series /metrics produces: a family, or a histogram's or
    /// summary's `_bucket` / `_sum` / `_count` (and nothing else carries those suffixes).
    fn has(&self, name: &str) -> bool {
        if self.families.contains_key(name) {
            return true;
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                match self.families.get(base).map(String::as_str) {
                    Some("histogram") => true,
                    Some("summary") => *suffix != "_bucket",
                    _ => false,
                }
            })
        })
    }

    /// Problems with the selectors of `file`. In queries, `job` is the target's label
    /// (Prometheus renames a scraped `job` label to `exported_job`); in promtool input
    /// series, which are written as stored, both appear.
    pub fn problems(&self, file: &str, sels: &[Selector], queries: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for s in sels {
            if let Some((_, own)) = PROMETHEUS_OWN.iter().find(|(n, _)| *n == s.name) {
                for l in s.labels.iter().filter(|l| !own.contains(&l.as_str())) {
                    problems.push(format!("{file}: {} has no label {l}", s.name));
                }
                continue;
            }
            if !self.has(&s.name) {
                problems.push(format!("{file}: {} is not exported by /metrics", s.name));
                continue;
            }
            let Some(exported) = self.sample_labels.get(&s.name) else {
                problems.push(format!(
                    "{file}: no sample of {} to check its labels against",
                    s.name
                ));
                continue;
            };
            for l in &s.labels {
                let ok = match l.as_str() {
                    "exported_job" => exported.contains("job"),
                    "job" if queries && exported.contains("job") => false,
                    l if TARGET_LABELS.contains(&l) => true,
                    l => exported.contains(l),
                };
                if !ok {
                    problems.push(format!(
                        "{file}: {} selects on label {l}; the metric carries {exported:?} (a scraped `job` label becomes `exported_job`)",
                        s.name
                    ));
                }
            }
        }
        problems
    }
}

#[test]
fn selector_extraction_ignores_functions_keywords_and_labels() {
    let got = selectors(
        r#"histogram_quantile(0.99, max by (le) (rate(a_bucket{le!="+Inf", x=~"}{,"}[5m])))
           > bool 3 and on () sum without (state) (b offset 15m) / ignoring(i) group_left(j) c
           or absent(d{exported_job="staleness"}) unless e{service=~"$service"} - 1e3 # f"#,
    );
    let want = [
        ("a_bucket", &["le", "x"][..]),
        ("b", &[]),
        ("c", &[]),
        ("d", &["exported_job"]),
        ("e", &["service"]),
    ];
    let want: Vec<Selector> = want
        .iter()
        .map(|(n, l)| Selector {
            name: (*n).into(),
            labels: l.iter().map(|s| (*s).into()).collect(),
        })
        .collect();
    assert_eq!(got, want);

    let exported = Exported::parse(
        "# TYPE ferry_nodes gauge\nferry_nodes{service=\"web\",state=\"ok\"} 1\n\
         # TYPE ferry_job_last_pass_seconds gauge\nferry_job_last_pass_seconds{job=\"staleness\"} 0.1\n\
         # TYPE ferry_lat_seconds histogram\nferry_lat_seconds_bucket{le=\"1\"} 0\nferry_lat_seconds_count 0\n",
    );
    let check = |e: &str| exported.problems("t", &selectors(e), true);
    assert!(
        check(r#"ferry_nodes{state="stale"} + ferry_lat_seconds_count + up{job="ferry"}"#)
            .is_empty()
    );
    assert!(
        check(r#"ferry_job_last_pass_seconds{exported_job="staleness", instance="x"}"#).is_empty()
    );
    for bad in [
        "ferry_nodez > 0",
        "ferry_nodes_count",
        "ferry_lat_seconds_total",
        r#"ferry_nodes{tenant="a"}"#,
        r#"ferry_job_last_pass_seconds{job="staleness"}"#,
        r#"up{service="web"}"#,
    ] {
        assert_eq!(check(bad).len(), 1, "{bad} must be refused");
    }
}
