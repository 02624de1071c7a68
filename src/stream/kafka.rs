//! librdkafka client settings for a deployment's consumers and producers.
//!
//! The settings the delivery guarantee rests on are set here last, after the user's
//! pass-through tables, and configuration refuses those keys in every table
//! ([`crate::config::MANAGED_KAFKA_KEYS`]), so they cannot be overridden.

use crate::config::{Delivery, DeploymentConfig};
use rdkafka::ClientConfig;

/// Default wait of a fetch request for data: short enough that a record waits little at low
/// rates, long enough that an idle consumer sends ~20 fetches per second, not hundreds.
pub const DEFAULT_FETCH_WAIT_MS: &str = "50";

/// Default pause of a partition's fetching once its local queue is over its limit
/// (`queued.max.messages.kbytes`): librdkafka's default is 1000 ms, and it does not end the
/// pause when the queue drains, so a partition whose prefetch filled sat unread for up to a
/// second: the ceiling of the pipeline bench (about 165,000 records/s; 378,000 with 20 ms).
/// The decision it brings forward is a local check, not a request.
pub const DEFAULT_FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// Consumer settings: manual offset store (only delivered offsets are ever stored) and
/// commits of what was stored, paced by the consumer thread; for exactly-once, no consumer
/// commits at all (offsets go through the producer's transactions).
pub fn consumer_config(d: &DeploymentConfig, worker: usize) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", format!("streamscore-{}-{worker}", d.name))
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", DEFAULT_FETCH_WAIT_MS)
        .set("fetch.queue.backoff.ms", DEFAULT_FETCH_QUEUE_BACKOFF_MS)
        // Statistics feed the consumer-lag metric.
        .set("statistics.interval.ms", "5000")
        // The rebalance timeout, and librdkafka's JoinGroup request timeout less 3 s. The
        // consumer thread never stops polling (a revoke waits at most 10 s), so 60 s costs
        // nothing, and a join a coordinator leaves unanswered is retried after 63 s rather
        // than librdkafka's default 303 s.
        .set("max.poll.interval.ms", "60000")
        // librdkafka's prefetch, bounded per deployment: the largest share of the process's
        // memory under a backlog (a queued message costs several times its bytes), and what
        // keeps fetching ahead of tansu's round trips (see PREFETCH_KBYTES).
        .set(
            "queued.max.messages.kbytes",
            prefetch_kbytes(d.workers).to_string(),
        );
    for (k, v) in &d.kafka {
        if !is_producer_only(k) {
            c.set(k, v);
        }
    }
    for (k, v) in &d.input.kafka {
        c.set(k, v);
    }
    // Commits are paced by the consumer thread itself (see `consumer.rs`), so a slow
    // coordinator is never sent a second commit while one is outstanding.
    c.set("bootstrap.servers", &d.input.bootstrap_servers)
        .set("group.id", d.group_id())
        .set("auto.offset.reset", d.start_from.offset_reset())
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    c
}

/// Prefetch of the deployment's consumers together, in KiB. Measured with the pipeline bench
/// (2 workers, 200,000 queued tweets, medians of 3, one run each, 2026-11-29, with the 20 ms
/// fetch queue backoff): 1 MiB a worker read at 0.49× the bare copy with a peak RSS of 63 MB,
/// 2 MiB at 0.49× with 76 MB, 4 MiB at 0.42–0.48× with 100 MB. Past the first MiB the
/// prefetch bought no speed on a local broker; 2 MiB keeps room for a broker further away
/// (a fetch of 1 MiB per partition fits twice).
pub const PREFETCH_KBYTES: usize = 4 * 1024;

/// Each worker's share of [`PREFETCH_KBYTES`], at least 2 MiB.
pub fn prefetch_kbytes(workers: usize) -> usize {
    (PREFETCH_KBYTES / workers.max(1)).max(2048)
}

/// Default compression of the output: a scored record is several times its input (the tweet's
/// id, label, probability, model, source, and four headers), and on the pipeline bench lz4
/// cut tansu's CPU per output record by a third, which is what the latency tail follows.
/// Any Kafka client reads lz4; `output.kafka` (or `kafka`) `compression.type` overrides it.
pub const DEFAULT_COMPRESSION: &str = "lz4";

/// Producer settings: idempotent (no duplicates or reordering from internal retries); for
/// exactly-once, transactional with an id stable for this instance, group and worker.
pub fn producer_config(d: &DeploymentConfig, worker: usize) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set(
        "client.id",
        format!("streamscore-{}-producer-{worker}", d.name),
    )
    .set("linger.ms", "5")
    .set("compression.type", DEFAULT_COMPRESSION)
    .set("message.timeout.ms", "30000")
    .set("queue.buffering.max.messages", "1000000")
    // Bytes waiting in the producer are bounded too (records in flight are counted by
    // `batch.max_in_flight`, but one record may be large).
    .set("queue.buffering.max.kbytes", "65536");
    for (k, v) in &d.kafka {
        if !is_consumer_only(k) {
            c.set(k, v);
        }
    }
    for (k, v) in &d.output.kafka {
        c.set(k, v);
    }
    c.set("bootstrap.servers", d.output_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.max.bytes", d.output.max_message_bytes.to_string());
    if d.delivery == Delivery::ExactlyOnce {
        c.set(
            "transactional.id",
            format!("streamscore-{}-{}-{worker}", d.group_id(), instance_id()),
        )
        // A transaction left open by a crashed process is aborted by the broker after this.
        .set("transaction.timeout.ms", "30000");
    }
    c
}

/// This instance's name in transactional ids: `STREAMSCORE_INSTANCE_ID`, else the host name.
/// It is stable across restarts, so a restarted instance fences its predecessor's producer and
/// aborts the transaction it left open; instances sharing a host and a group must set distinct
/// values.
pub fn instance_id() -> String {
    std::env::var("STREAMSCORE_INSTANCE_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "local".into())
}

/// Settings that only mean something to a consumer (librdkafka warns when a producer gets them).
fn is_consumer_only(key: &str) -> bool {
    key.starts_with("session.")
        || key.starts_with("heartbeat.")
        || key.starts_with("fetch.")
        || key.starts_with("auto.")
        || key.starts_with("group.")
        || key.starts_with("partition.assignment")
        || key.starts_with("max.poll")
        || key.starts_with("queued.")
        || key.starts_with("isolation.")
}

/// Settings that only mean something to a producer.
fn is_producer_only(key: &str) -> bool {
    key.starts_with("linger.")
        || key.starts_with("acks")
        || key.starts_with("compression.")
        || key.starts_with("batch.")
        || key.starts_with("message.timeout")
        || key.starts_with("queue.buffering")
        || key.starts_with("transactional.")
        || key.starts_with("transaction.")
        || key.starts_with("delivery.")
        || key.starts_with("retries")
        || key.starts_with("retry.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_is_shared_by_the_workers_with_a_floor() {
        assert_eq!(prefetch_kbytes(1), 4 * 1024);
        assert_eq!(prefetch_kbytes(2), 2 * 1024);
        assert_eq!(prefetch_kbytes(64), 2048);
        assert_eq!(prefetch_kbytes(0), 4 * 1024, "never divides by zero");
    }
}
