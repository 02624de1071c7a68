//! Every metric of the daemon, defined once, named per Prometheus rules (base units,
//! `_total` counters, `_seconds` histograms) and labelled only with small fixed sets:
//! deployment, label, reason, topic kind, partition, status, route template, and opinion
//! subject (at most `opinion::subjects::MAX_SUBJECTS` per deployment).
//!
//! The data plane records through [`DeploymentMetrics`], whose handles are resolved once per
//! deployment start, so a record costs an atomic add (per batch where the stage batches), never
//! a label lookup. Values that are states rather than events (deployment status, model
//! version, assigned partitions) are read from the registry of deployments at scrape time
//! ([`Metrics::encode`] with [`DeploymentState`]s).

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every deployment status, so a status gauge shows 0 for the states a deployment is not in.
pub const STATUSES: [&str; 6] = [
    "INITIALIZING",
    "ASSIGNING",
    "RUNNING",
    "STALLED",
    "STOPPED",
    "FAILED",
];

/// Every dead-letter reason code (the `reason` label).
pub const DEAD_LETTER_REASONS: [&str; 6] = [
    "not_utf8",
    "invalid_json",
    "missing_text",
    "empty_text",
    "null_value",
    "too_large",
];

/// Every delivery error class (the `class` label).
pub const ERROR_CLASSES: [&str; 3] = ["retry", "too_large", "fatal"];

/// The process's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    consumed: IntCounterVec,
    scored: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    delivery_retries: IntCounterVec,
    delivery_errors: IntCounterVec,
    batch_records: HistogramVec,
    scoring_seconds: HistogramVec,
    latency_seconds: HistogramVec,
    lag: IntGaugeVec,
    assigned: IntGaugeVec,
    status: IntGaugeVec,
    model_info: IntGaugeVec,
    model_swaps: IntCounterVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    opinion_tweets: IntGaugeVec,
    opinion_share: GaugeVec,
    opinion_late: IntGaugeVec,
}

/// What the scrape needs to know of one deployment's state.
#[derive(Debug, Clone)]
pub struct DeploymentState {
    /// Deployment id (the `deployment` label).
    pub id: String,
    /// Wire status (one of [`STATUSES`]).
    pub status: &'static str,
    /// Model context id and version serving now, if loaded.
    pub model: Option<(String, String)>,
    /// The latest closed opinion window of each subject (`*` first), and the late records.
    pub opinion: Option<(Vec<crate::opinion::WindowSummary>, u64)>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Defines and registers every metric (and, on Linux, the process collector: CPU, RSS,
    /// open file descriptors).
    pub fn new() -> Metrics {
        let d = &["deployment"];
        let latency_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let m = Metrics {
            registry: Registry::new(),
            consumed: counter(
                "streamscore_records_consumed_total",
                "Records read from the input topic.",
                d,
            ),
            scored: counter(
                "streamscore_records_scored_total",
                "Records labelled by the model, by label.",
                &["deployment", "label"],
            ),
            produced: counter(
                "streamscore_records_produced_total",
                "Records delivered, to the output topic (topic=\"output\") or the dead-letter topic (topic=\"dead_letter\").",
                &["deployment", "topic"],
            ),
            dead_lettered: counter(
                "streamscore_records_dead_lettered_total",
                "Records sent to the dead-letter topic, by reason.",
                &["deployment", "reason"],
            ),
            delivery_retries: counter(
                "streamscore_delivery_retries_total",
                "Failed deliveries answered by a rewind, a new producer and a replay.",
                d,
            ),
            delivery_errors: counter(
                "streamscore_delivery_errors_total",
                "Delivery errors reported by the producer, by class (retry, too_large, fatal).",
                &["deployment", "class"],
            ),
            batch_records: histogram(
                "streamscore_batch_records",
                "Records per scored batch.",
                d,
                prometheus::exponential_buckets(1.0, 4.0, 8).expect("valid buckets"),
            ),
            scoring_seconds: histogram(
                "streamscore_batch_scoring_seconds",
                "Time to parse, score, encode and hand one batch to the producer.",
                d,
                prometheus::exponential_buckets(0.0001, 4.0, 9).expect("valid buckets"),
            ),
            latency_seconds: histogram(
                "streamscore_end_to_end_latency_seconds",
                "From the input record's timestamp to the delivery of its output or dead letter.",
                d,
                latency_buckets,
            ),
            lag: gauge(
                "streamscore_consumer_lag_records",
                "Records of an owned partition not yet delivered: the partition's end as the consumer last saw it in fetch responses, minus the delivered position.",
                &["deployment", "partition"],
            ),
            assigned: gauge(
                "streamscore_assigned_partitions",
                "Input partitions the deployment's consumers own.",
                d,
            ),
            status: gauge(
                "streamscore_deployment_status",
                "1 for the deployment's current status, 0 for the others.",
                &["deployment", "status"],
            ),
            model_info: gauge(
                "streamscore_model_info",
                "The model serving a deployment: context id and version (value 1).",
                &["deployment", "context_id", "version"],
            ),
            model_swaps: counter(
                "streamscore_model_swaps_total",
                "Model versions put into service by a hot swap, by context id.",
                &["context_id"],
            ),
            http_requests: counter(
                "streamscore_http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
                &["method", "route", "status"],
            ),
            http_seconds: histogram(
                "streamscore_http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
                &["method", "route"],
                prometheus::exponential_buckets(0.0005, 4.0, 9).expect("valid buckets"),
            ),
            opinion_tweets: gauge(
                "streamscore_opinion_window_tweets",
                "Tweets in the latest closed opinion window, by subject (\"*\" is every tweet) and label.",
                &["deployment", "subject", "label"],
            ),
            opinion_share: GaugeVec::new(
                Opts::new(
                    "streamscore_opinion_positive_share",
                    "Share of POSITIVE tweets in the latest closed opinion window, by subject (0 when it had none).",
                ),
                &["deployment", "subject"],
            )
            .expect("valid metric definition"),
            opinion_late: gauge(
                "streamscore_opinion_late_records",
                "Records that arrived after their opinion window had closed, since the deployment was loaded.",
                d,
            ),
        };
        let collectors: [Box<dyn Collector>; 19] = [
            Box::new(m.opinion_tweets.clone()),
            Box::new(m.opinion_share.clone()),
            Box::new(m.opinion_late.clone()),
            Box::new(m.consumed.clone()),
            Box::new(m.scored.clone()),
            Box::new(m.produced.clone()),
            Box::new(m.dead_lettered.clone()),
            Box::new(m.delivery_retries.clone()),
            Box::new(m.delivery_errors.clone()),
            Box::new(m.batch_records.clone()),
            Box::new(m.scoring_seconds.clone()),
            Box::new(m.latency_seconds.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.assigned.clone()),
            Box::new(m.status.clone()),
            Box::new(m.model_info.clone()),
            Box::new(m.model_swaps.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.http_seconds.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        m
    }

    /// Handles for one deployment's data plane.
    pub fn deployment(&self, id: &str) -> DeploymentMetrics {
        let with = |v: &IntCounterVec, l: &str| v.with_label_values(&[id, l]);
        DeploymentMetrics {
            id: id.to_owned(),
            consumed: self.consumed.with_label_values(&[id]),
            positive: with(&self.scored, "POSITIVE"),
            negative: with(&self.scored, "NEGATIVE"),
            produced_output: with(&self.produced, "output"),
            produced_dead_letter: with(&self.produced, "dead_letter"),
            dead_lettered: self.dead_lettered.clone(),
            retries: self.delivery_retries.with_label_values(&[id]),
            errors: self.delivery_errors.clone(),
            batch_records: self.batch_records.with_label_values(&[id]),
            scoring_seconds: self.scoring_seconds.with_label_values(&[id]),
            latency_seconds: self.latency_seconds.with_label_values(&[id]),
            lag: self.lag.clone(),
            assigned: self.assigned.with_label_values(&[id]),
        }
    }

    /// Forgets every series of a deleted deployment (lag series go with their partitions).
    pub fn remove_deployment(&self, id: &str) {
        for v in [&self.consumed, &self.delivery_retries] {
            let _ = v.remove_label_values(&[id]);
        }
        for v in [
            &self.batch_records,
            &self.scoring_seconds,
            &self.latency_seconds,
        ] {
            let _ = v.remove_label_values(&[id]);
        }
        let _ = self.assigned.remove_label_values(&[id]);
        let pairs: [(&IntCounterVec, &[&str]); 4] = [
            (&self.scored, &["POSITIVE", "NEGATIVE"]),
            (&self.produced, &["output", "dead_letter"]),
            (&self.dead_lettered, &DEAD_LETTER_REASONS),
            (&self.delivery_errors, &ERROR_CLASSES),
        ];
        for (v, values) in pairs {
            for value in values {
                let _ = v.remove_label_values(&[id, value]);
            }
        }
    }

    /// Counts a model version put into service by a swap.
    pub fn model_swapped(&self, context_id: &str) {
        self.model_swaps.with_label_values(&[context_id]).inc();
    }

    /// Counts one answered HTTP request. `route` must be a route template (or a fixed word
    /// for unmatched paths), never a raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut buf = itoa::Buffer::new();
        self.http_requests
            .with_label_values(&[method, route, buf.format(status)])
            .inc();
        self.http_seconds
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// The text exposition of every metric, with state gauges refreshed from `deployments`.
    pub fn encode(&self, deployments: &[DeploymentState]) -> String {
        self.status.reset();
        self.model_info.reset();
        self.opinion_tweets.reset();
        self.opinion_share.reset();
        self.opinion_late.reset();
        for d in deployments {
            if let Some((windows, late)) = &d.opinion {
                self.opinion_late
                    .with_label_values(&[&d.id])
                    .set(*late as i64);
                for w in windows {
                    let labels = |l| [d.id.as_str(), w.subject.as_str(), l];
                    self.opinion_tweets
                        .with_label_values(&labels("POSITIVE"))
                        .set(w.positive as i64);
                    self.opinion_tweets
                        .with_label_values(&labels("NEGATIVE"))
                        .set(w.negative as i64);
                    self.opinion_share
                        .with_label_values(&[&d.id, &w.subject])
                        .set(w.positive_share);
                }
            }
            for s in STATUSES {
                self.status
                    .with_label_values(&[&d.id, s])
                    .set(i64::from(s == d.status));
            }
            if let Some((context, version)) = &d.model {
                self.model_info
                    .with_label_values(&[&d.id, context, version])
                    .set(1);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One deployment's metric handles, shared by its workers' stages.
#[derive(Clone)]
pub struct DeploymentMetrics {
    id: String,
    /// Records consumed.
    pub consumed: IntCounter,
    /// Records labelled POSITIVE.
    pub positive: IntCounter,
    /// Records labelled NEGATIVE.
    pub negative: IntCounter,
    /// Outputs delivered.
    pub produced_output: IntCounter,
    /// Dead letters delivered.
    pub produced_dead_letter: IntCounter,
    dead_lettered: IntCounterVec,
    /// Rewinds after a failed delivery.
    pub retries: IntCounter,
    errors: IntCounterVec,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Scoring time per batch.
    pub scoring_seconds: Histogram,
    /// Input timestamp to delivery.
    pub latency_seconds: Histogram,
    lag: IntGaugeVec,
    /// Partitions owned by the deployment's consumers.
    pub assigned: IntGauge,
}

impl std::fmt::Debug for DeploymentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentMetrics")
            .field("deployment", &self.id)
            .finish_non_exhaustive()
    }
}

impl Default for DeploymentMetrics {
    /// Handles registered nowhere, shared by every default (the placeholder counters of a
    /// deployment that has not started; starting it replaces them). Built once: a registry per
    /// default would cost a registry and a process collector per deployment loaded.
    fn default() -> Self {
        static UNREGISTERED: std::sync::OnceLock<DeploymentMetrics> = std::sync::OnceLock::new();
        UNREGISTERED
            .get_or_init(|| Metrics::new().deployment("none"))
            .clone()
    }
}

impl DeploymentMetrics {
    /// Counts `n` dead letters of a reason (one of the fixed reason codes).
    pub fn dead_lettered(&self, reason: &str, n: u64) {
        self.dead_lettered
            .with_label_values(&[&self.id, reason])
            .inc_by(n);
    }

    /// Counts a delivery error of a class (`retry`, `too_large`, `fatal`).
    pub fn delivery_error(&self, class: &str) {
        self.errors.with_label_values(&[&self.id, class]).inc();
    }

    /// Sets the lag of an owned partition.
    pub fn set_lag(&self, partition: i32, lag: i64) {
        let mut buf = itoa::Buffer::new();
        self.lag
            .with_label_values(&[&self.id, buf.format(partition)])
            .set(lag);
    }

    /// The deployment's consumer lag summed over its owned partitions (as last reported).
    pub fn lag_total(&self) -> i64 {
        self.lag
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "deployment" && l.value() == self.id)
            })
            .map(|m| m.get_gauge().value() as i64)
            .sum()
    }

    /// Removes the lag series of partitions no longer owned.
    pub fn remove_lag(&self, partitions: &[i32]) {
        let mut buf = itoa::Buffer::new();
        for &p in partitions {
            let _ = self.lag.remove_label_values(&[&self.id, buf.format(p)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_follow_prometheus_rules_and_states_are_one_hot() {
        let m = Metrics::new();
        let d = m.deployment("d1");
        d.consumed.inc_by(3);
        d.positive.inc();
        d.dead_lettered("invalid_json", 2);
        d.latency_seconds.observe(0.05);
        d.set_lag(0, 7);
        d.assigned.set(1);
        m.model_swapped("ctx");
        m.http_request("GET", "/health/live", 200, 0.001);
        let text = m.encode(&[DeploymentState {
            id: "d1".into(),
            status: "RUNNING",
            model: Some(("ctx".into(), "3".into())),
            opinion: Some((
                vec![crate::opinion::WindowSummary {
                    subject: "acme".into(),
                    start_ms: 0,
                    end_ms: 60_000,
                    positive: 3,
                    negative: 1,
                    positive_share: 0.75,
                    mean_positive_probability: 0.7,
                    closed: true,
                }],
                2,
            )),
        }]);
        for line in [
            "streamscore_records_consumed_total{deployment=\"d1\"} 3",
            "streamscore_records_scored_total{deployment=\"d1\",label=\"POSITIVE\"} 1",
            "streamscore_records_dead_lettered_total{deployment=\"d1\",reason=\"invalid_json\"} 2",
            "streamscore_consumer_lag_records{deployment=\"d1\",partition=\"0\"} 7",
            "streamscore_deployment_status{deployment=\"d1\",status=\"RUNNING\"} 1",
            "streamscore_deployment_status{deployment=\"d1\",status=\"FAILED\"} 0",
            "streamscore_model_info{context_id=\"ctx\",deployment=\"d1\",version=\"3\"} 1",
            "streamscore_model_swaps_total{context_id=\"ctx\"} 1",
            "streamscore_end_to_end_latency_seconds_count{deployment=\"d1\"} 1",
            "streamscore_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1",
            "streamscore_opinion_window_tweets{deployment=\"d1\",label=\"POSITIVE\",subject=\"acme\"} 3",
            "streamscore_opinion_positive_share{deployment=\"d1\",subject=\"acme\"} 0.75",
            "streamscore_opinion_late_records{deployment=\"d1\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        d.remove_lag(&[0]);
        m.remove_deployment("d1");
        let text = m.encode(&[]);
        assert!(!text.contains("deployment=\"d1\""), "{text}");
    }
}
