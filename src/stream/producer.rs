//! The producer stage: outputs and dead letters handed to librdkafka, delivery reports turned
//! into acknowledgements.
//!
//! One [`Sink`] per worker wraps a `BaseProducer`, served by a thread of its own, whose
//! delivery callback receives the source `(partition, offset)` packed into the message's
//! opaque word: no future, channel or box per record. Delivery errors are classified
//! ([`classify`]):
//! - purged by ourselves (a rewind) → ignored;
//! - too large for the broker → the record is dead-lettered again, cut to 1 KiB, so its
//!   partition moves on;
//! - a missing or forbidden topic → [`Fault::Fatal`]: the deployment fails with the reason;
//! - anything else (timeouts, broker errors, a fenced producer) → [`Fault::Retry`]: the
//!   consumer rewinds to the first undelivered offset, the scorer builds a fresh producer, and
//!   the records are produced again, in order.

use super::acker::{Acker, Fault};
use super::record::{headers, original_headers, sha256_hex, source_headers, ScoreContext};
use super::stats::coarse_now_ms;
use super::Stats;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::{ClientConfig, ClientContext};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, warn};

/// Bytes of a refused record's value kept in the dead letter that replaces it.
const REFUSED_KEEP_BYTES: usize = 1024;

/// How long one call of the delivery thread waits for events. rdkafka's `poll` rounds the
/// time left down to whole milliseconds and spins through the last one with zero-timeout
/// polls; `ThreadedProducer` polls in 100 ms calls, so each idle producer burnt about 1 % of
/// a core (measured: 3.5 ms of system time a second). One-second calls make that a tenth.
/// A stopped [`Sink`] does not wait for the thread: it ends within this time on its own.
const POLL_CALL: Duration = Duration::from_secs(1);

/// Most partitions an input topic may have: a delivery report carries its record's source
/// partition in 15 bits (see [`Opaque`]). A deployment refuses a larger input topic at its
/// pre-flight check.
pub const MAX_INPUT_PARTITIONS: usize = 1 << 15;
const PARTITION_MASK: u64 = MAX_INPUT_PARTITIONS as u64 - 1;
const OFFSET_MASK: u64 = (1 << 48) - 1;

/// What a delivery report needs to know of its record, packed into the message's opaque
/// word: its source position and whether it went to the dead-letter topic (so the report
/// need not read the topic's name back from librdkafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opaque {
    /// Source partition (15 bits kept: below [`MAX_INPUT_PARTITIONS`]).
    pub partition: i32,
    /// Source offset (48 bits kept: 2.8 × 10^14 records a partition).
    pub offset: i64,
    /// Sent to the dead-letter topic rather than the output topic.
    pub dead_letter: bool,
}

impl Opaque {
    /// The opaque of a record read at `source` (partition, offset).
    pub fn of(source: (i32, i64), dead_letter: bool) -> Opaque {
        Opaque {
            partition: source.0,
            offset: source.1,
            dead_letter,
        }
    }

    /// Packs into a word: 1 bit dead-letter, 15 bits of partition, 48 of offset.
    pub fn pack(self) -> usize {
        let p = self.partition as u64 & PARTITION_MASK;
        let o = self.offset as u64 & OFFSET_MASK;
        (u64::from(self.dead_letter) << 63 | p << 48 | o) as usize
    }

    /// Unpacks [`pack`](Self::pack).
    pub fn unpack(word: usize) -> Opaque {
        let v = word as u64;
        Opaque {
            partition: (v >> 48 & PARTITION_MASK) as i32,
            offset: (v & OFFSET_MASK) as i64,
            dead_letter: v >> 63 == 1,
        }
    }
}

/// What a delivery error means for the record and the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// We purged it ourselves (rewind or shutdown).
    Purged,
    /// The broker will never take this record as it is.
    TooLarge,
    /// Retrying cannot help without an operator.
    Fatal,
    /// A fresh producer and a replay may succeed.
    Retry,
}

/// Classifies a produce or delivery error.
pub fn classify(e: &KafkaError) -> Class {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::PurgeQueue | C::PurgeInflight) => Class::Purged,
        Some(C::MessageSizeTooLarge | C::InvalidRecord | C::InvalidMessage) => Class::TooLarge,
        Some(
            C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidTopic,
        ) => Class::Fatal,
        _ => Class::Retry,
    }
}

/// A record refused as too large, to be dead-lettered again in a form that fits.
struct Refused {
    source: (i32, i64),
    size: usize,
    sha256: String,
    value: Vec<u8>,
}

impl Refused {
    fn of(source: (i32, i64), value: &[u8]) -> Refused {
        Refused {
            source,
            size: value.len(),
            sha256: sha256_hex(value),
            value: value[..value.len().min(REFUSED_KEEP_BYTES)].to_vec(),
        }
    }
}

/// Delivery callbacks of one producer (one epoch of one worker).
pub struct DeliveryContext {
    acker: Arc<Acker>,
    epoch: u64,
    stats: Arc<Stats>,
    transactional: bool,
    refused: Arc<Mutex<Vec<Refused>>>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            self.acker.raise(
                self.epoch,
                Fault::Retry(format!("producer fatal error: {reason}")),
            );
        }
        warn!(error = %error, reason, "Kafka producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let Opaque {
            partition,
            offset,
            dead_letter,
        } = Opaque::unpack(opaque);
        match result {
            Ok(_) => {
                self.stats.delivered(dead_letter);
                if !self.transactional {
                    let timestamp = self.acker.delivered(self.epoch, partition, offset);
                    self.stats.observe_latency(coarse_now_ms(), timestamp);
                }
            }
            Err((e, m)) => match classify(e) {
                Class::Purged => {}
                class => self.failed(class, e, m, (partition, offset)),
            },
        }
    }
}

impl DeliveryContext {
    /// A delivery that failed for a reason other than our own purge.
    fn failed(&self, class: Class, e: &KafkaError, m: &BorrowedMessage<'_>, source: (i32, i64)) {
        let metrics = self.stats.metrics();
        match class {
            Class::Purged => {}
            Class::TooLarge if !self.transactional => {
                metrics.delivery_error("too_large");
                let refused = Refused::of(source, m.payload().unwrap_or_default());
                lock(&self.refused).push(refused);
            }
            Class::Fatal => {
                metrics.delivery_error("fatal");
                self.acker.raise(
                    self.epoch,
                    Fault::Fatal(format!("cannot deliver to topic {:?}: {e}", m.topic())),
                )
            }
            Class::Retry | Class::TooLarge => {
                metrics.delivery_error("retry");
                self.acker.raise(
                    self.epoch,
                    Fault::Retry(format!("delivery to {:?} failed: {e}", m.topic())),
                )
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One worker's producer for one epoch.
pub struct Sink {
    producer: Arc<BaseProducer<DeliveryContext>>,
    /// Tells the delivery thread to end (it holds the last reference then, and destroys the
    /// producer: a purge, then up to 500 ms for the purged records' reports).
    stop_polling: Arc<AtomicBool>,
    epoch: u64,
    acker: Arc<Acker>,
    ctx: Arc<ScoreContext>,
    refused: Arc<Mutex<Vec<Refused>>>,
}

impl Sink {
    /// Creates the producer for `epoch` from `config` (transactional when it has a
    /// `transactional.id`).
    pub fn create(
        config: &ClientConfig,
        epoch: u64,
        acker: Arc<Acker>,
        stats: Arc<Stats>,
        ctx: Arc<ScoreContext>,
    ) -> Result<Sink, KafkaError> {
        let refused = Arc::new(Mutex::new(Vec::new()));
        let context = DeliveryContext {
            acker: acker.clone(),
            epoch,
            stats,
            transactional: config.get("transactional.id").is_some(),
            refused: refused.clone(),
        };
        let producer: Arc<BaseProducer<DeliveryContext>> =
            Arc::new(config.create_with_context(context)?);
        let stop_polling = Arc::new(AtomicBool::new(false));
        let (p, stop) = (producer.clone(), stop_polling.clone());
        std::thread::Builder::new()
            .name(format!("ss-deliver-{epoch}"))
            .spawn(move || {
                while !stop.load(Relaxed) {
                    p.poll(POLL_CALL);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("delivery thread: {e}")))?;
        Ok(Sink {
            producer,
            stop_polling,
            epoch,
            acker,
            ctx,
            refused,
        })
    }

    /// Loads the output and dead-letter topics' metadata into the producer's cache, so the
    /// first records after a start or a rewind are not held while librdkafka looks them up.
    /// Best effort: a failure leaves the lookup to the first send, as without it.
    pub fn warm_up(&self, timeout: Duration) {
        for topic in [&*self.ctx.output_topic, &*self.ctx.dlq_topic] {
            if let Err(e) = self.producer.client().fetch_metadata(Some(topic), timeout) {
                debug!(topic, error = %e, "producer metadata warm-up");
            }
        }
    }

    /// The epoch this producer serves.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The deployment's counters.
    pub fn stats(&self) -> &Stats {
        &self.producer.context().stats
    }

    /// The librdkafka producer (for transactions).
    pub fn producer(&self) -> &BaseProducer<DeliveryContext> {
        &self.producer
    }

    /// Hands one record to librdkafka, to the output topic or, with `dead_letter`, the
    /// dead-letter topic, waiting while its queue is full (until `stop` says so). A record the
    /// producer refuses as too large is replaced by a cut dead letter; other refusals raise a
    /// fault.
    pub fn send(
        &self,
        dead_letter: bool,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
        source: (i32, i64),
        stop: &dyn Fn() -> bool,
    ) {
        let topic = match dead_letter {
            true => &*self.ctx.dlq_topic,
            false => &*self.ctx.output_topic,
        };
        let opaque = Opaque::of(source, dead_letter).pack();
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, opaque).headers(headers);
        rec.key = key;
        rec.payload = value;
        loop {
            let Err((e, back)) = self.producer.send(rec) else {
                return;
            };
            match (e.rdkafka_error_code(), classify(&e)) {
                (Some(RDKafkaErrorCode::QueueFull), _) => {
                    if stop() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                (_, Class::TooLarge) => {
                    let refused = Refused::of(source, back.payload.unwrap_or_default());
                    return self.send_refused(refused, stop);
                }
                (_, Class::Fatal) => {
                    let why = format!("cannot produce to topic {topic:?}: {e}");
                    return self.acker.raise(self.epoch, Fault::Fatal(why));
                }
                _ => {
                    let why = format!("cannot produce to topic {topic:?}: {e}");
                    return self.acker.raise(self.epoch, Fault::Retry(why));
                }
            }
        }
    }

    /// Dead-letters a record that the producer or broker refused as too large: no key, the
    /// first bytes of its value, its original size and SHA-256.
    fn send_refused(&self, r: Refused, stop: &dyn Fn() -> bool) {
        let headers = original_headers(
            source_headers(&self.ctx, r.source.0, r.source.1),
            r.size,
            &r.sha256,
        )
        .insert(Header {
            key: headers::ERROR_REASON,
            value: Some(b"too_large".as_slice()),
        })
        .insert(Header {
            key: headers::ERROR_MESSAGE,
            value: Some(
                format!(
                    "a record of {} bytes was refused by Kafka as too large",
                    r.size
                )
                .as_bytes(),
            ),
        });
        let opaque = Opaque::of(r.source, true).pack();
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&self.ctx.dlq_topic, opaque).headers(headers);
        rec.payload = Some(&r.value);
        self.stats().metrics().dead_lettered("too_large", 1);
        loop {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((e, back))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) && !stop() =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, _)) => {
                    let why = format!("cannot dead-letter a refused record: {e}");
                    return self.acker.raise(self.epoch, Fault::Retry(why));
                }
            }
        }
    }

    /// Dead-letters the records the broker refused as too large since the last call.
    pub fn resend_refused(&self, stop: &dyn Fn() -> bool) {
        let refused = std::mem::take(&mut *lock(&self.refused));
        for r in refused {
            self.send_refused(r, stop);
        }
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            warn!(error = %e, "producer flush did not finish");
        }
    }

    /// Drops everything queued or in flight (their delivery reports say "purged").
    pub fn purge(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop_polling.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips_partitions_and_offsets() {
        for (partition, offset) in [(0, 0), (3, 81_723), (32_767, (1 << 48) - 1), (17, 1 << 40)] {
            for dead_letter in [false, true] {
                let o = Opaque::of((partition, offset), dead_letter);
                assert_eq!(Opaque::unpack(o.pack()), o);
                assert_eq!((o.partition, o.offset), (partition, offset));
            }
        }
    }

    #[test]
    fn errors_are_classified() {
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&e(RDKafkaErrorCode::PurgeQueue)), Class::Purged);
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageSizeTooLarge)),
            Class::TooLarge
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::UnknownTopicOrPartition)),
            Class::Fatal
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageTimedOut)),
            Class::Retry
        );
        assert_eq!(classify(&e(RDKafkaErrorCode::ProducerFenced)), Class::Retry);
    }
}
