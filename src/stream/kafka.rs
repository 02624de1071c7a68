//! librdkafka client settings for a deployment's consumers and producer.

use crate::config::DeploymentConfig;
use rdkafka::ClientConfig;

/// Consumer settings: manual offset store + periodic auto-commit of what was stored, so only
/// delivered offsets are ever committed.
pub fn consumer_config(d: &DeploymentConfig, worker: usize) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &d.input.bootstrap_servers)
        .set("group.id", d.group_id())
        .set("client.id", format!("streamscore-{}-{worker}", d.name))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Bound librdkafka's prefetch so a stalled pipeline holds little memory.
        .set("queued.max.messages.kbytes", "16384");
    for (k, v) in &d.kafka {
        if !is_producer_only(k) {
            c.set(k, v);
        }
    }
    for (k, v) in &d.input.kafka {
        c.set(k, v);
    }
    c
}

/// Producer settings: idempotent (no duplicates or reordering from internal retries), retried
/// without a deadline by librdkafka and, past that, by streamscore.
pub fn producer_config(d: &DeploymentConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", d.output_servers())
        .set("client.id", format!("streamscore-{}-producer", d.name))
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in &d.kafka {
        if !is_consumer_only(k) {
            c.set(k, v);
        }
    }
    for (k, v) in &d.output.kafka {
        c.set(k, v);
    }
    c
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
        || key.starts_with("delivery.")
        || key.starts_with("retries")
        || key.starts_with("retry.")
}
