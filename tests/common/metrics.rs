//! The relay's metrics as a test reads them: `GET /metrics` of the relay
//! under test, a sample found by name and labels, and the change between two
//! scrapes. Counters are asserted as deltas: the registry is process-wide,
//! so another test of the same binary (or an earlier relay) may have moved
//! them before this one began.

use std::net::SocketAddr;

use super::RunningRelay;

/// One scrape of `/metrics` (Prometheus text format).
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Scrapes the in-process `relay`'s admin API.
    pub async fn of(relay: &RunningRelay) -> Metrics {
        Metrics::scrape(relay.admin()).await
    }

    /// Scrapes the admin API at `admin`, which must answer 200.
    pub async fn scrape(admin: SocketAddr) -> Metrics {
        let answer = super::admin::get(admin, "/metrics").await;
        assert_eq!(answer.status, 200, "/metrics: {}", answer.body);
        Metrics { text: answer.body }
    }

    /// [`Metrics::scrape`] for a test without a runtime; None when the
    /// relay does not answer 200 (yet).
    pub fn scrape_blocking(admin: SocketAddr) -> Option<Metrics> {
        let answer =
            ses_relay::control::admin::client::request(admin, "GET", "/metrics", None, None)
                .ok()?;
        (answer.status == 200).then_some(Metrics { text: answer.body })
    }

    /// The whole text, for what is not one sample (`# HELP`, names).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The sample of `name` whose labels are exactly `labels` (in any
    /// order); None when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.text.lines().find_map(|line| {
            let sample = Sample::parse(line)?;
            let same = sample.name == name
                && sample.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v));
            same.then_some(sample.value)
        })
    }

    /// [`Metrics::value`], 0 when absent (a counter not yet touched).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The sample named as Prometheus writes it, `name{k="v",...}` (as a
    /// page's hook names it); 0 when absent.
    pub fn series(&self, series: &str) -> f64 {
        let sample = Sample::parse(&format!("{series} 0"))
            .unwrap_or_else(|| panic!("not a series: {series}"));
        let labels: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.get(&sample.name, &labels)
    }

    /// How much the sample grew since `before`.
    pub fn delta(&self, before: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels) - before.get(name, labels)
    }
}

/// One sample line: `name{k="v",...} value`.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn parse(line: &str) -> Option<Sample> {
        if line.starts_with('#') {
            return None;
        }
        let end = line.find(['{', ' '])?;
        let name = line[..end].to_string();
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let (i, c) = chars.next()?;
                match c {
                    '}' => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        // A quoted value with \\, \" and \n escapes.
                        chars.next().filter(|(_, c)| *c == '"')?;
                        let mut value = String::new();
                        loop {
                            match chars.next()?.1 {
                                '"' => break,
                                '\\' => match chars.next()?.1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.push((std::mem::take(&mut key), value));
                    }
                    other => key.push(other),
                }
            }
        }
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Sample {
            name,
            labels,
            value,
        })
    }
}
