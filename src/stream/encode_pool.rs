//! The encoding pool: with `batch.scoring_threads` above 1 (the default is 2), a worker's
//! batches are parsed, scored and encoded on that many threads at once, while the scorer
//! thread only hands the results to the producer, in consumption order.
//!
//! The scorer submits each batch it takes from the consumer ([`EncodePool::submit`]) and
//! takes the results back oldest first ([`EncodePool::oldest`]): a batch's records reach the
//! producer only after every earlier batch's, whichever thread encoded it, so per-key order
//! holds as with one thread. At most `threads` batches are submitted and not yet taken back,
//! which bounds the memory the pool holds to that many batches and their outputs.
//!
//! One worker with a pool keeps one consumer and one producer: extra workers add Kafka
//! clients, each costing CPU a record (README, "Workers"), while the pool adds only threads.

use super::batcher::Batch;
use super::record::{Encoder, Outcome, Samples, ScoreContext, ServingModel};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A batch's outputs and dead letters, one per record, in the batch's order.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Every record's value, one after another.
    pub values: Vec<u8>,
    /// The records, their values as ranges of [`values`](Self::values).
    pub records: Vec<Outcome<Range<usize>>>,
    /// Recent examples captured from the batch.
    pub samples: Samples,
    /// Time spent encoding the batch.
    pub took: Duration,
}

impl Encoded {
    /// A record's value.
    pub fn value(&self, r: &Outcome<Range<usize>>) -> Option<&[u8]> {
        r.value.clone().map(|v| &self.values[v])
    }
}

/// Encodes every record of `batch` with `serving` into owned outputs.
pub fn encode_batch(
    encoder: &mut Encoder,
    serving: &ServingModel,
    ctx: &ScoreContext,
    batch: &Batch,
) -> Encoded {
    let started = Instant::now();
    encoder.begin_sampled_batch(serving, ctx);
    let mut out = Encoded {
        values: Vec::with_capacity(batch.len() * 320),
        records: Vec::with_capacity(batch.len()),
        ..Encoded::default()
    };
    for item in batch.items() {
        let key_len = batch.key(item).map_or(0, <[u8]>::len);
        let o = encoder.encode(
            serving,
            ctx,
            item.partition,
            item.offset,
            key_len,
            batch.payload(item),
        );
        let values = &mut out.values;
        out.records.push(o.map_value(|v| {
            let start = values.len();
            values.extend_from_slice(v);
            start..values.len()
        }));
    }
    out.samples = std::mem::take(&mut encoder.samples);
    out.took = started.elapsed();
    out
}

/// A batch handed to the pool, with where its result goes.
struct Job {
    batch: Batch,
    serving: Arc<ServingModel>,
    done: Sender<Done>,
}

/// A batch the pool encoded, with the model that scored it.
pub struct Done {
    /// The batch, as submitted.
    pub batch: Batch,
    /// The model it was scored with.
    pub serving: Arc<ServingModel>,
    /// Its outputs and dead letters.
    pub encoded: Encoded,
}

/// Why the pool could not give a result back.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// An encoding thread could not be started.
    #[error("cannot start an encoding thread: {0}")]
    Spawn(std::io::Error),
    /// An encoding thread ended without answering (it panicked: a bug).
    #[error("an encoding thread ended without its result")]
    Lost,
}

/// `threads` encoding threads and the results they owe, oldest first.
pub struct EncodePool {
    jobs: Option<Sender<Job>>,
    pending: VecDeque<Receiver<Done>>,
    threads: usize,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl EncodePool {
    /// Starts `threads` encoding threads for the worker labelled `label`.
    pub fn start(threads: usize, ctx: Arc<ScoreContext>, label: &str) -> Result<Self, PoolError> {
        let threads = threads.max(1);
        let (jobs, rx) = bounded::<Job>(threads);
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads {
            let (rx, ctx) = (rx.clone(), ctx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("ss-encode-{label}-{n}"))
                .spawn(move || {
                    let mut encoder = Encoder::default();
                    for job in rx {
                        let encoded = encode_batch(&mut encoder, &job.serving, &ctx, &job.batch);
                        // The scorer may have stopped waiting (an abort): nothing to do then.
                        let _ = job.done.send(Done {
                            batch: job.batch,
                            serving: job.serving,
                            encoded,
                        });
                    }
                })
                .map_err(PoolError::Spawn)?;
            handles.push(handle);
        }
        Ok(EncodePool {
            jobs: Some(jobs),
            pending: VecDeque::with_capacity(threads),
            threads,
            handles,
        })
    }

    /// Whether another batch may be submitted before the oldest result is taken.
    pub fn has_room(&self) -> bool {
        // One more than the threads: each stays busy while the scorer sends the oldest.
        self.pending.len() <= self.threads
    }

    /// Whether results are owed.
    pub fn is_busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands `batch` to the next free encoding thread. Call only with [`has_room`](Self::has_room).
    pub fn submit(&mut self, batch: Batch, serving: Arc<ServingModel>) -> Result<(), PoolError> {
        let (done, result) = bounded(1);
        let jobs = self.jobs.as_ref().ok_or(PoolError::Lost)?;
        jobs.send(Job {
            batch,
            serving,
            done,
        })
        .map_err(|_| PoolError::Lost)?;
        self.pending.push_back(result);
        Ok(())
    }

    /// The oldest submitted batch and its result, waiting for it; `None` when none is owed.
    pub fn oldest(&mut self) -> Option<Result<Done, PoolError>> {
        let result = self.pending.pop_front()?;
        Some(result.recv().map_err(|_| PoolError::Lost))
    }
}

impl Drop for EncodePool {
    fn drop(&mut self) {
        // Closing the job channel ends the threads once they finish what they hold.
        self.jobs = None;
        self.pending.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::InputSpec;
    use crate::model::Model;

    fn ctx() -> Arc<ScoreContext> {
        Arc::new(ScoreContext {
            deployment: "dep".into(),
            input_topic: "in".into(),
            output_topic: "out".into(),
            dlq_topic: "out.dlq".into(),
            input: InputSpec {
                format: crate::input::InputFormat::Json,
                text_field: "text".into(),
                max_bytes: 1 << 20,
            },
            max_message_bytes: 1 << 20,
            subjects: None,
        })
    }

    fn serving() -> Arc<ServingModel> {
        Arc::new(ServingModel {
            model: Model::from_bytes(crate::model::DEFAULT_MODEL).unwrap(),
            context_id: "ctx".into(),
            version: "1".into(),
        })
    }

    fn batch(first: i64, n: i64) -> Batch {
        let mut b = Batch::with_capacity(n as usize);
        for o in first..first + n {
            let text = if o % 7 == 3 {
                "not json".to_string()
            } else {
                format!(r#"{{"id":"{o}","text":"a good day number {o}"}}"#)
            };
            b.push(
                0,
                o,
                None,
                Some(o.to_string().as_bytes()),
                Some(text.as_bytes()),
            );
        }
        b
    }

    #[test]
    fn results_come_back_in_submission_order_and_match_one_thread() {
        let (ctx, serving) = (ctx(), serving());
        let mut pool = EncodePool::start(3, ctx.clone(), "t").unwrap();
        let mut single = Encoder::default();
        let mut next_batch = 0i64;
        let mut seen = 0i64;
        while seen < 40 * 50 {
            while pool.has_room() && next_batch < 40 {
                pool.submit(batch(next_batch * 50, 50), serving.clone())
                    .unwrap();
                next_batch += 1;
            }
            let Done {
                batch: b, encoded, ..
            } = pool.oldest().expect("a result is owed").unwrap();
            let reference = encode_batch(&mut single, &serving, &ctx, &b);
            assert_eq!(encoded.records.len(), b.len());
            for ((item, r), want) in b
                .items()
                .iter()
                .zip(&encoded.records)
                .zip(&reference.records)
            {
                assert_eq!(item.offset, seen, "batches come back in order");
                seen += 1;
                assert_eq!(r.dead_letter, want.dead_letter);
                assert_eq!(r.label, want.label);
                let (got, want_v) = (encoded.value(r), reference.value(want));
                if r.dead_letter.is_none() {
                    // Outputs carry scored_at, which differs between the two encodings.
                    let cut = |v: &[u8]| {
                        let s = String::from_utf8(v.to_vec()).unwrap();
                        s[..s.find("\"scored_at\"").unwrap()].to_string()
                    };
                    assert_eq!(cut(got.unwrap()), cut(want_v.unwrap()));
                } else {
                    assert_eq!(got, want_v);
                }
            }
        }
        assert!(!pool.is_busy());
        assert!(pool.oldest().is_none());
    }

    #[test]
    fn room_is_bounded_by_the_threads() {
        let mut pool = EncodePool::start(2, ctx(), "t").unwrap();
        let serving = serving();
        assert!(pool.has_room());
        pool.submit(batch(0, 5), serving.clone()).unwrap();
        pool.submit(batch(5, 5), serving.clone()).unwrap();
        assert!(pool.has_room(), "one more than the threads may be owed");
        pool.submit(batch(10, 5), serving.clone()).unwrap();
        assert!(!pool.has_room(), "three owed results fill a pool of two");
        let done = pool.oldest().unwrap().unwrap();
        assert_eq!(done.batch.items()[0].offset, 0);
        assert!(pool.has_room());
    }
}
