//! `GET /metrics`: Prometheus' text format. Requests and errors by route, latency histograms
//! per route, and from each batching queue its depth, batch sizes, tokens and compute time.

use crate::batching::{BatchStats, BATCH_SIZE_BUCKETS};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds (the last is +Inf).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct RouteStats {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    /// Failed requests by error kind.
    errors: BTreeMap<&'static str, u64>,
    latency_counts: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: f64,
    inputs: u64,
    tokens: u64,
}

/// A queue metric: name, Prometheus type, help, and its value from the queue's stats.
type QueueFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&BatchStats) -> f64,
);

/// What the server counts per route.
#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<&'static str, RouteStats>>,
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(
        &self,
        route: &'static str,
        status: u16,
        error: Option<&'static str>,
        latency: Duration,
        (inputs, tokens): (usize, usize),
    ) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = routes.entry(route).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        if let Some(kind) = error {
            *stats.errors.entry(kind).or_default() += 1;
        }
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        stats.latency_counts[bucket] += 1;
        stats.latency_sum += seconds;
        stats.inputs += inputs as u64;
        stats.tokens += tokens as u64;
    }

    /// The text of `/metrics`: the routes' counters, then each queue's (`(name, stats)`).
    pub fn render(&self, queues: &[(&str, BatchStats)], uptime: Duration) -> String {
        let mut t = Text::default();
        self.render_routes(&mut t);
        render_queues(&mut t, queues);
        t.family(
            "densa_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        t.sample("densa_uptime_seconds", "", uptime.as_secs_f64());
        t.0
    }

    /// The routes' counters and latency histograms.
    fn render_routes(&self, t: &mut Text) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        t.family(
            "densa_requests_total",
            "counter",
            "Requests answered, by route and HTTP status.",
        );
        for (r, s) in routes.iter() {
            for (code, n) in &s.by_status {
                t.sample(
                    "densa_requests_total",
                    &format!("route=\"{r}\",status=\"{code}\""),
                    n,
                );
            }
        }
        t.family(
            "densa_errors_total",
            "counter",
            "Failed requests, by route and kind.",
        );
        for (r, s) in routes.iter() {
            for (kind, n) in &s.errors {
                t.sample(
                    "densa_errors_total",
                    &format!("route=\"{r}\",kind=\"{kind}\""),
                    n,
                );
            }
        }
        let name = "densa_request_duration_seconds";
        t.family(
            name,
            "histogram",
            "Time from a request's arrival to its response, by route.",
        );
        for (r, s) in routes.iter() {
            let labels = format!("route=\"{r}\"");
            let (counts, sum) = (&s.latency_counts, s.latency_sum);
            t.histogram(name, &labels, &LATENCY_BUCKETS, counts, sum);
        }
        let name = "densa_request_inputs_total";
        t.family(name, "counter", "Texts (or pairs) received, by route.");
        for (r, s) in routes.iter() {
            t.sample(name, &format!("route=\"{r}\""), s.inputs);
        }
        let name = "densa_request_tokens_total";
        t.family(name, "counter", "Tokens of the inputs received, by route.");
        for (r, s) in routes.iter() {
            t.sample(name, &format!("route=\"{r}\""), s.tokens);
        }
    }
}

/// The metrics that are one number per batching queue.
const QUEUE_FAMILIES: [QueueFamily; 9] = [
    (
        "densa_queue_calls",
        "gauge",
        "Calls waiting in the batching queue.",
        |s| s.queued_calls as f64,
    ),
    (
        "densa_queue_tokens",
        "gauge",
        "Tokens waiting in the batching queue.",
        |s| s.queued_tokens as f64,
    ),
    (
        "densa_batches_total",
        "counter",
        "Forward passes run.",
        |s| s.batches as f64,
    ),
    (
        "densa_batched_inputs_total",
        "counter",
        "Inputs run in forward passes.",
        |s| s.inputs as f64,
    ),
    (
        "densa_batched_tokens_total",
        "counter",
        "Tokens run in forward passes.",
        |s| s.tokens as f64,
    ),
    (
        "densa_compute_seconds_total",
        "counter",
        "Time spent in forward passes.",
        |s| s.compute_micros as f64 / 1e6,
    ),
    (
        "densa_tokens_per_second",
        "gauge",
        "Tokens per second of forward-pass time since start.",
        |s| {
            let seconds = s.compute_micros as f64 / 1e6;
            if seconds > 0.0 {
                s.tokens as f64 / seconds
            } else {
                0.0
            }
        },
    ),
    (
        "densa_withdrawn_total",
        "counter",
        "Calls withdrawn before they ran (the client went away).",
        |s| s.withdrawn as f64,
    ),
    (
        "densa_refused_total",
        "counter",
        "Calls refused because the queue was full (429).",
        |s| s.refused as f64,
    ),
];

/// Each queue's numbers ([`QUEUE_FAMILIES`]) and its batch-size histogram.
fn render_queues(t: &mut Text, queues: &[(&str, BatchStats)]) {
    for (name, kind, help, value) in QUEUE_FAMILIES {
        t.family(name, kind, help);
        for (q, s) in queues {
            t.sample(name, &format!("queue=\"{q}\""), value(s));
        }
    }
    let name = "densa_batch_size";
    t.family(name, "histogram", "Inputs per forward pass.");
    for (q, s) in queues {
        let labels = format!("queue=\"{q}\"");
        let (counts, sum) = (&s.batch_size_counts, s.inputs as f64);
        t.histogram(name, &labels, &BATCH_SIZE_BUCKETS, counts, sum);
    }
}

/// Prometheus' text format, line by line.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        match labels {
            "" => writeln!(self.0, "{name} {value}"),
            _ => writeln!(self.0, "{name}{{{labels}}} {value}"),
        }
        .expect("writing to a String");
    }

    /// Cumulative `_bucket` lines (the counts past the last bound are `+Inf`'s), `_sum`, `_count`.
    fn histogram<B: std::fmt::Display>(
        &mut self,
        name: &str,
        labels: &str,
        bounds: &[B],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0;
        for (i, n) in counts.iter().enumerate() {
            cumulative += n;
            let le = bounds.get(i).map_or("+Inf".into(), |b| b.to_string());
            self.sample(
                &format!("{name}_bucket"),
                &format!("{labels},le=\"{le}\""),
                cumulative,
            );
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}
