//! The scorer stage: one thread per worker takes batches from the consumer, has them scored
//! with the serving model (by its [`EncodePool`], several batches at once, or by itself with
//! one scoring thread) and hands each output or dead letter to the producer, in consumption
//! order (so per-key order holds). Scoring runs on threads of its own, never on an async one.
//!
//! The scorer owns its worker's [`Sink`]: when the acknowledgement epoch moves (a rewind), it
//! drops the old producer, purging what it still held, and builds a fresh one, so a fenced or
//! broken producer never blocks the stream.

use super::acker::{Acker, Fault};
use super::batcher::{Batch, Item};
use super::encode_pool::{Done, EncodePool};
use super::producer::Sink;
use super::record::{Encoder, Outcome, Samples, ScoreContext, ServingModel};
use super::transactions::{Cadence, GroupView, Transaction};
use super::{Stats, StreamError};
use crate::metrics::DeploymentMetrics;
use crate::model::{Label, ModelHandle};
use crate::opinion::{Opinion, Sample};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often an idle scorer looks at its transaction, epoch and refused records.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// Longest a new producer waits for each of its two topics' metadata before scoring.
const WARM_UP_WAIT: Duration = Duration::from_secs(2);
/// Longest a finishing at-least-once scorer waits for its last deliveries.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Exactly-once settings of a scorer.
pub struct Transactional {
    /// When to commit.
    pub cadence: Cadence,
    /// The worker's consumer: its group metadata (sent with the offsets) and what the group
    /// has committed (read back until a transaction settles).
    pub group: Arc<dyn GroupView>,
}

/// Everything one scorer thread needs.
pub struct Scorer {
    /// Worker label for logs.
    pub label: String,
    /// Batches from the consumer.
    pub batches: Receiver<Batch>,
    /// The serving model (hot-swappable; read once per batch).
    pub model: Arc<ModelHandle<ServingModel>>,
    /// Topics and input settings.
    pub ctx: Arc<ScoreContext>,
    /// The worker's acknowledgement state.
    pub acker: Arc<Acker>,
    /// Deployment counters.
    pub stats: Arc<Stats>,
    /// Producer settings.
    pub producer_config: ClientConfig,
    /// Set for exactly-once delivery.
    pub transactional: Option<Transactional>,
    /// Hard stop: abandon what is queued.
    pub abort: CancellationToken,
    /// The consumer has finished: end once the channel is empty.
    pub finished: CancellationToken,
    /// The deployment's opinion windows and recent examples.
    pub opinion: Arc<Opinion>,
    /// Cancelled once the first producer exists (for exactly-once: its transactions are
    /// initialised, so this instance's earlier transactions are complete).
    pub producer_ready: CancellationToken,
    /// Threads that encode batches (`batch.scoring_threads`): with 1 this thread encodes and
    /// sends; with more, an [`EncodePool`] encodes and this thread sends, in order.
    pub scoring_threads: usize,
}

impl Scorer {
    /// Runs until the consumer has finished and the channel is empty (then finishes its
    /// deliveries) or the worker is aborted.
    pub fn run(self) -> Result<(), StreamError> {
        let stop = || self.abort.is_cancelled();
        let first = self.sink(self.acker.epoch());
        self.producer_ready.cancel();
        let mut sink = first?;
        let mut txn = self
            .transactional
            .as_ref()
            .map(|t| Transaction::new(t.cadence));
        let mut encoder = Encoder::default();
        let mut pool = match self.scoring_threads {
            0 | 1 => None,
            n => Some(
                EncodePool::start(n, self.ctx.clone(), &self.label)
                    .map_err(|e| StreamError::Scoring(e.to_string()))?,
            ),
        };
        loop {
            if stop() {
                sink.purge();
                return Ok(());
            }
            let epoch = self.acker.epoch();
            if epoch != sink.epoch() {
                debug!(worker = %self.label, epoch, "rewound: new producer");
                if let Some(t) = txn.as_mut() {
                    t.abort(&sink);
                }
                sink.purge();
                sink = self.sink(epoch)?;
            }
            sink.resend_refused(&stop);
            let more = match pool.as_mut() {
                None => match self.batches.recv_timeout(IDLE_TICK) {
                    Ok(batch) => {
                        if self.current(&batch, &sink) {
                            self.score(&batch, &sink, &mut encoder, txn.as_mut());
                        }
                        true
                    }
                    Err(RecvTimeoutError::Timeout) => !self.finished.is_cancelled(),
                    Err(RecvTimeoutError::Disconnected) => false,
                },
                Some(pool) => self.pool_step(pool, &sink, txn.as_mut())?,
            };
            if !more {
                break;
            }
            self.commit_if_due(&sink, txn.as_mut(), false);
        }
        self.commit_if_due(&sink, txn.as_mut(), true);
        if txn.is_none() {
            sink.flush(FINAL_FLUSH);
        }
        Ok(())
    }

    /// A producer for `epoch` (transactions initialised when exactly-once).
    fn sink(&self, epoch: u64) -> Result<Sink, StreamError> {
        let sink = Sink::create(
            &self.producer_config,
            epoch,
            self.acker.clone(),
            self.stats.clone(),
            self.ctx.clone(),
        )?;
        sink.warm_up(WARM_UP_WAIT);
        if self.transactional.is_some() {
            if let Err(fault) = Transaction::init(&sink) {
                self.acker.raise(epoch, fault);
            }
        }
        Ok(sink)
    }

    fn score(
        &self,
        batch: &Batch,
        sink: &Sink,
        encoder: &mut Encoder,
        mut txn: Option<&mut Transaction>,
    ) {
        if !self.open(sink, txn.as_deref_mut()) {
            return;
        }
        let started = Instant::now();
        let serving = self.model.current();
        let mut emit = Emit::new(self);
        encoder.begin_sampled_batch(&serving, &self.ctx);
        for item in batch.items() {
            let key = batch.key(item);
            let out = encoder.encode(
                &serving,
                &self.ctx,
                item.partition,
                item.offset,
                key.map_or(0, <[u8]>::len),
                batch.payload(item),
            );
            emit.record(self, sink, txn.as_deref_mut(), item, key, out);
        }
        let samples = std::mem::take(&mut encoder.samples);
        emit.finish(self, samples, &serving, batch.len(), started.elapsed());
    }

    /// Opens the transaction a batch goes into (exactly-once); `false` (a fault raised) when
    /// it cannot be opened and the batch must not be sent.
    fn open(&self, sink: &Sink, txn: Option<&mut Transaction>) -> bool {
        match txn.map(|t| t.ensure_open(sink)) {
            Some(Err(fault)) => {
                self.acker.raise(sink.epoch(), fault);
                false
            }
            _ => true,
        }
    }

    /// Whether `batch` is to be sent: read in the producer's epoch, with no fault raised since.
    fn current(&self, batch: &Batch, sink: &Sink) -> bool {
        batch.epoch == sink.epoch() && self.acker.fault().is_none()
    }

    /// One turn with an encoding pool: hand it the batches that are ready (waiting up to
    /// [`IDLE_TICK`] for one when it owes nothing), then send its oldest result. `Ok(false)`
    /// once the consumer has finished and everything submitted was sent.
    fn pool_step(
        &self,
        pool: &mut EncodePool,
        sink: &Sink,
        txn: Option<&mut Transaction>,
    ) -> Result<bool, StreamError> {
        let mut ended = false;
        while pool.has_room() {
            // Owing results, take only what is ready: the oldest is sent below.
            let wait = if pool.is_busy() {
                Duration::ZERO
            } else {
                IDLE_TICK
            };
            match self.batches.recv_timeout(wait) {
                Ok(batch) if self.current(&batch, sink) => pool
                    .submit(batch, self.model.current())
                    .map_err(|e| StreamError::Scoring(e.to_string()))?,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    ended = self.finished.is_cancelled();
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        match pool.oldest() {
            Some(done) => {
                let done = done.map_err(|e| StreamError::Scoring(e.to_string()))?;
                if self.current(&done.batch, sink) {
                    self.send_encoded(done, sink, txn);
                }
                Ok(true)
            }
            None => Ok(!ended),
        }
    }

    /// Sends a batch the pool encoded, as [`score`](Self::score) sends what it encodes.
    fn send_encoded(&self, done: Done, sink: &Sink, mut txn: Option<&mut Transaction>) {
        if !self.open(sink, txn.as_deref_mut()) {
            return;
        }
        let started = Instant::now();
        let Done {
            batch,
            serving,
            encoded,
        } = done;
        let mut emit = Emit::new(self);
        let values = &encoded.values;
        for (item, r) in batch.items().iter().zip(encoded.records) {
            let rec = r.map_value(|v| &values[v]);
            emit.record(self, sink, txn.as_deref_mut(), item, batch.key(item), rec);
        }
        let took = encoded.took + started.elapsed();
        emit.finish(self, encoded.samples, &serving, batch.len(), took);
    }

    /// Commits the open transaction when due (or, with `finishing`, whatever it holds).
    fn commit_if_due(&self, sink: &Sink, txn: Option<&mut Transaction>, finishing: bool) {
        let (Some(t), Some(tx)) = (txn, self.transactional.as_ref()) else {
            return;
        };
        if !t.due(finishing || self.acker.commit_requested()) || self.acker.fault().is_some() {
            return;
        }
        let result = t.commit(sink, &self.ctx.input_topic, tx.group.as_ref(), &self.acker);
        if let Err(fault) = result {
            self.acker.raise(sink.epoch(), fault);
        }
    }
}

/// What sending a batch counts: labels, dead letters and opinion windows.
struct Emit {
    tally: Tally,
    opinion: crate::opinion::Tally,
    now: i64,
}

impl Emit {
    fn new(scorer: &Scorer) -> Emit {
        Emit {
            tally: Tally::default(),
            opinion: scorer.opinion.tally(),
            now: super::now_ms(),
        }
    }

    /// Counts one record and hands it to the producer (and the open transaction).
    fn record(
        &mut self,
        scorer: &Scorer,
        sink: &Sink,
        txn: Option<&mut Transaction>,
        item: &Item,
        key: Option<&[u8]>,
        rec: Outcome<&[u8]>,
    ) {
        self.tally.count(rec.label, rec.dead_letter);
        if let Some(label) = rec.label {
            // Event time: the record's timestamp, never ahead of the wall clock.
            let at = item.timestamp_ms.unwrap_or(self.now).min(self.now);
            let p = f64::from(rec.positive_probability);
            let positive = label == Label::Positive;
            let (partition, offset) = (item.partition, item.offset);
            self.opinion
                .count(partition, offset, at, rec.subjects, positive, p);
        }
        let stop = || scorer.abort.is_cancelled();
        let source = (item.partition, item.offset);
        let dead_letter = rec.dead_letter.is_some();
        sink.send(dead_letter, key, rec.value, rec.headers, source, &stop);
        if let Some(t) = txn {
            t.produced(item.partition, item.offset);
        }
    }

    /// Adds the batch to the opinion windows and the metrics.
    fn finish(
        self,
        scorer: &Scorer,
        samples: Samples,
        serving: &ServingModel,
        records: usize,
        took: Duration,
    ) {
        let now = self.now;
        let samples = samples
            .taken
            .map(|t| t.map(|(id, text, p)| Sample::new(id.as_deref(), &text, f64::from(p), now)));
        scorer
            .opinion
            .record_batch(&self.opinion, samples, &serving.version, now);
        let metrics = scorer.stats.metrics();
        self.tally.record(metrics);
        metrics.batch_records.observe(records as f64);
        metrics.scoring_seconds.observe(took.as_secs_f64());
    }
}

/// Labels and dead-letter reasons of one batch, added to the metrics once per batch.
#[derive(Default)]
struct Tally {
    positive: u64,
    negative: u64,
    /// Dead letters by reason (a handful of fixed codes).
    dead: Vec<(&'static str, u64)>,
}

impl Tally {
    fn count(&mut self, label: Option<Label>, dead_letter: Option<&'static str>) {
        match (label, dead_letter) {
            (_, Some(reason)) => match self.dead.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => self.dead.push((reason, 1)),
            },
            (Some(Label::Positive), None) => self.positive += 1,
            (Some(Label::Negative), None) => self.negative += 1,
            (None, None) => {}
        }
    }

    fn record(&self, m: &DeploymentMetrics) {
        m.positive.inc_by(self.positive);
        m.negative.inc_by(self.negative);
        for &(reason, n) in &self.dead {
            m.dead_lettered(reason, n);
        }
    }
}

impl From<Fault> for StreamError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Retry(why) | Fault::Fatal(why) => StreamError::Delivery(why),
        }
    }
}
