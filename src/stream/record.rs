//! Record encoding: a consumed record's bytes in, its output or dead letter out (the CPU work
//! of a batch), borrowed from the batch and written into reused buffers.

use super::output::{OutputTemplate, Scored};
use crate::input::{InputError, InputSpec};
use crate::model::{Label, Model, Scratch};
use crate::opinion::{MatchScratch, Subjects};
use rdkafka::message::{Header, OwnedHeaders};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The model a deployment serves, with the identity written into every output.
#[derive(Debug)]
pub struct ServingModel {
    /// The loaded model.
    pub model: Model,
    /// The model's context id (its name in the model store).
    pub context_id: String,
    /// The version label written to outputs and headers.
    pub version: String,
}

/// What a deployment's scoring step needs besides the model.
#[derive(Debug, Clone)]
pub struct ScoreContext {
    /// Deployment id written to outputs.
    pub deployment: Arc<str>,
    /// Input topic (for source fields and headers).
    pub input_topic: Arc<str>,
    /// Output topic.
    pub output_topic: Arc<str>,
    /// Dead-letter topic.
    pub dlq_topic: Arc<str>,
    /// How to read input values.
    pub input: InputSpec,
    /// Largest record the producer sends (key, value and headers); longer dead letters are cut.
    pub max_message_bytes: usize,
    /// Subjects matched in each scored text (listed in the output), if the deployment has any.
    pub subjects: Option<Arc<Subjects>>,
}

/// Header names written on outputs and dead letters.
pub mod headers {
    /// Model version that labeled the record.
    pub const MODEL_VERSION: &str = "streamscore.model.version";
    /// Source topic.
    pub const SOURCE_TOPIC: &str = "streamscore.source.topic";
    /// Source partition (decimal).
    pub const SOURCE_PARTITION: &str = "streamscore.source.partition";
    /// Source offset (decimal).
    pub const SOURCE_OFFSET: &str = "streamscore.source.offset";
    /// Dead-letter reason code (`not_utf8`, `invalid_json`, `missing_text`, `empty_text`, `too_large`).
    pub const ERROR_REASON: &str = "streamscore.error.reason";
    /// Dead-letter reason, in words.
    pub const ERROR_MESSAGE: &str = "streamscore.error.message";
    /// Size of the original value of a dead letter that was cut to fit (decimal bytes).
    pub const ORIGINAL_SIZE: &str = "streamscore.original.size";
    /// SHA-256 (hex) of the original value of a dead letter that was cut to fit.
    pub const ORIGINAL_SHA256: &str = "streamscore.original.sha256";
}

/// Room kept for headers and framing when cutting a dead letter to `max_message_bytes`.
const DEAD_LETTER_HEADROOM: usize = 4096;

/// What one consumed record becomes: a labeled output or a dead letter. `V` is its value:
/// bytes borrowed from the [`Encoder`], or where they lie in a batch's buffer.
#[derive(Debug)]
pub struct Outcome<V> {
    /// Value to produce (`None` keeps a tombstone a tombstone).
    pub value: Option<V>,
    /// Headers.
    pub headers: OwnedHeaders,
    /// Dead-letter reason, when this is a dead letter (it goes to the dead-letter topic;
    /// anything else to the output topic).
    pub dead_letter: Option<&'static str>,
    /// The predicted label, when scored.
    pub label: Option<Label>,
    /// P(positive), when scored.
    pub positive_probability: f32,
    /// The subjects the text matched (bit mask over the deployment's subjects).
    pub subjects: u32,
}

impl<V> Outcome<V> {
    /// The same outcome with its value mapped by `f`.
    pub fn map_value<W>(self, f: impl FnOnce(V) -> W) -> Outcome<W> {
        Outcome {
            value: self.value.map(f),
            headers: self.headers,
            dead_letter: self.dead_letter,
            label: self.label,
            positive_probability: self.positive_probability,
            subjects: self.subjects,
        }
    }
}

/// Recent examples captured while encoding a batch (the first scored record per label).
#[derive(Debug, Default)]
pub struct Samples {
    /// Capture the next records' texts (set per batch by the scorer).
    pub wanted: bool,
    /// By label index (NEGATIVE, POSITIVE): (id, text, P(positive)).
    pub taken: [Option<(Option<String>, String, f32)>; 2],
}

/// Turns consumed records into outputs, reusing its buffers from record to record.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
    scratch: Scratch,
    matching: MatchScratch,
    scored_at: String,
    template: OutputTemplate,
    /// Recent examples of the current batch.
    pub samples: Samples,
}

impl Encoder {
    /// Starts a batch scored by `serving`: every output of the batch carries this time as
    /// `scored_at`. Pass the same `serving` to [`encode`](Self::encode) for the batch.
    pub fn begin_batch(&mut self, serving: &ServingModel, ctx: &ScoreContext) {
        self.scored_at.clear();
        use std::fmt::Write;
        let _ = write!(
            self.scored_at,
            "{}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        self.template.begin(serving, ctx, &self.scored_at);
    }

    /// [`begin_batch`](Self::begin_batch) for a scorer: also captures the batch's recent
    /// examples into [`samples`](Self::samples), cleared first.
    pub fn begin_sampled_batch(&mut self, serving: &ServingModel, ctx: &ScoreContext) {
        self.begin_batch(serving, ctx);
        self.samples = Samples {
            wanted: true,
            taken: Default::default(),
        };
    }

    /// Scores one record: its output, or its dead letter (original bytes, cut to fit the
    /// producer's limit when needed). Never panics on record content.
    pub fn encode<'a>(
        &'a mut self,
        serving: &'a ServingModel,
        ctx: &'a ScoreContext,
        partition: i32,
        offset: i64,
        key_len: usize,
        payload: Option<&'a [u8]>,
    ) -> Outcome<&'a [u8]> {
        if !self.template.is_begun() {
            // A caller that skipped `begin_batch` still gets well-formed outputs.
            self.begin_batch(serving, ctx);
        }
        let parsed = match payload {
            Some(bytes) => ctx.input.parse_borrowed(bytes),
            None => Err(InputError::NullValue),
        };
        let headers = source_headers(ctx, partition, offset);
        match parsed {
            Ok(p) => {
                let pred = serving.model.score_with(&p.text, &mut self.scratch);
                let subjects = ctx
                    .subjects
                    .as_ref()
                    .map_or(0, |s| s.matches(&p.text, &mut self.matching));
                let positive_probability = pred.positive_probability();
                let slot = &mut self.samples.taken[pred.label.index()];
                if self.samples.wanted && slot.is_none() {
                    *slot = Some((
                        p.id.as_deref().map(str::to_owned),
                        p.text
                            .chars()
                            .take(crate::opinion::RECENT_TEXT_CHARS)
                            .collect(),
                        positive_probability,
                    ));
                }
                let scored = Scored {
                    id: p.id.as_deref(),
                    label: pred.label,
                    probability: pred.probability,
                    partition,
                    offset,
                    subjects: ctx.subjects.as_deref().map(|s| (s, subjects)),
                };
                self.template.write(&mut self.buf, &scored);
                Outcome {
                    value: Some(&self.buf),
                    headers: headers.insert(Header {
                        key: headers::MODEL_VERSION,
                        value: Some(serving.version.as_bytes()),
                    }),
                    dead_letter: None,
                    label: Some(pred.label),
                    positive_probability,
                    subjects,
                }
            }
            Err(e) => {
                let limit = ctx
                    .max_message_bytes
                    .saturating_sub(key_len + DEAD_LETTER_HEADROOM);
                let (value, headers) = dead_letter_value(payload, limit, headers);
                Outcome {
                    value,
                    headers: headers
                        .insert(Header {
                            key: headers::ERROR_REASON,
                            value: Some(e.code().as_bytes()),
                        })
                        .insert(Header {
                            key: headers::ERROR_MESSAGE,
                            value: Some(e.to_string().as_bytes()),
                        }),
                    dead_letter: Some(e.code()),
                    label: None,
                    positive_probability: 0.0,
                    subjects: 0,
                }
            }
        }
    }
}

/// A dead letter's value: the original bytes, or their first `limit` bytes with the original
/// size and SHA-256 in headers when they do not fit.
pub fn dead_letter_value(
    payload: Option<&[u8]>,
    limit: usize,
    headers: OwnedHeaders,
) -> (Option<&[u8]>, OwnedHeaders) {
    match payload {
        Some(p) if p.len() > limit => (
            Some(&p[..limit]),
            original_headers(headers, p.len(), &sha256_hex(p)),
        ),
        other => (other, headers),
    }
}

/// Adds the original size and SHA-256 of a value that was cut.
pub fn original_headers(headers: OwnedHeaders, size: usize, sha256: &str) -> OwnedHeaders {
    headers
        .insert(Header {
            key: headers::ORIGINAL_SIZE,
            value: Some(itoa::Buffer::new().format(size).as_bytes()),
        })
        .insert(Header {
            key: headers::ORIGINAL_SHA256,
            value: Some(sha256.as_bytes()),
        })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The source topic, partition and offset headers every output and dead letter carries.
pub fn source_headers(ctx: &ScoreContext, partition: i32, offset: i64) -> OwnedHeaders {
    let mut p = itoa::Buffer::new();
    let mut o = itoa::Buffer::new();
    OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: headers::SOURCE_TOPIC,
            value: Some(ctx.input_topic.as_bytes()),
        })
        .insert(Header {
            key: headers::SOURCE_PARTITION,
            value: Some(p.format(partition).as_bytes()),
        })
        .insert(Header {
            key: headers::SOURCE_OFFSET,
            value: Some(o.format(offset).as_bytes()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn ctx() -> ScoreContext {
        ScoreContext {
            deployment: "dep-1".into(),
            input_topic: "in".into(),
            output_topic: "out".into(),
            dlq_topic: "out.dlq".into(),
            input: InputSpec {
                format: crate::input::InputFormat::Json,
                ..InputSpec::default()
            },
            max_message_bytes: 16 * 1024,
            subjects: None,
        }
    }

    fn serving() -> ServingModel {
        ServingModel {
            model: Model::from_bytes(crate::model::DEFAULT_MODEL).unwrap(),
            context_id: "sentiment".into(),
            version: "3".into(),
        }
    }

    fn header<'a>(h: &'a OwnedHeaders, key: &str) -> Option<&'a [u8]> {
        h.iter().find(|x| x.key == key).and_then(|x| x.value)
    }

    #[test]
    fn a_scored_record_carries_label_model_source_and_headers() {
        let (serving, ctx) = (serving(), ctx());
        let mut enc = Encoder::default();
        enc.begin_batch(&serving, &ctx);
        let out = enc.encode(
            &serving,
            &ctx,
            2,
            5,
            2,
            Some(br#"{"id_str": "1204", "text": "I love it"}"#),
        );
        assert_eq!(out.dead_letter, None);
        assert_eq!(out.label, Some(Label::Positive));
        let v: serde_json::Value = serde_json::from_slice(out.value.unwrap()).unwrap();
        assert_eq!(v["id"], "1204");
        assert_eq!(v["prediction"], "POSITIVE");
        assert_eq!(v["model"]["version"], "3");
        assert_eq!(v["source"]["offset"], 5);
        assert_eq!(v["source"]["partition"], 2);
        assert_eq!(v["deployment"], "dep-1");
        assert!(v["scored_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            header(&out.headers, headers::MODEL_VERSION),
            Some(&b"3"[..])
        );
        assert_eq!(
            header(&out.headers, headers::SOURCE_OFFSET),
            Some(&b"5"[..])
        );
        assert_eq!(
            header(&out.headers, headers::SOURCE_PARTITION),
            Some(&b"2"[..])
        );
    }

    #[test]
    fn an_encoder_used_without_begin_batch_still_writes_whole_outputs() {
        let (serving, ctx) = (serving(), ctx());
        let mut enc = Encoder::default();
        let out = enc.encode(&serving, &ctx, 1, 7, 0, Some(br#"{"text": "so happy"}"#));
        let v: serde_json::Value = serde_json::from_slice(out.value.unwrap()).unwrap();
        assert_eq!(v["source"]["offset"], 7);
        assert_eq!(v["model"]["context_id"], "sentiment");
        assert!(v["scored_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn bad_records_become_dead_letters_with_their_original_bytes() {
        let (serving, ctx) = (serving(), ctx());
        let mut enc = Encoder::default();
        let cases: [(Option<&[u8]>, &str); 5] = [
            (Some(b"\xff\xfe"), "not_utf8"),
            (Some(b"{nope"), "invalid_json"),
            (Some(br#"{"text": ""}"#), "empty_text"),
            (Some(br#"{"other": 1}"#), "missing_text"),
            (None, "null_value"),
        ];
        for (payload, reason) in cases {
            let out = enc.encode(&serving, &ctx, 0, 9, 0, payload);
            assert_eq!(out.dead_letter, Some(reason));
            assert_eq!(
                out.value, payload,
                "dead letters keep the original bytes (or null)"
            );
            assert_eq!(
                header(&out.headers, headers::ERROR_REASON),
                Some(reason.as_bytes())
            );
            assert_eq!(header(&out.headers, headers::ORIGINAL_SIZE), None);
        }
    }

    #[test]
    fn a_dead_letter_too_large_for_the_producer_is_cut_with_size_and_digest() {
        let serving = serving();
        let mut ctx = ctx();
        ctx.input.max_bytes = 1024;
        let big = vec![b'x'; 40_000];
        let mut enc = Encoder::default();
        let out = enc.encode(&serving, &ctx, 0, 1, 10, Some(&big));
        assert_eq!(out.dead_letter, Some("too_large"));
        let limit = 16 * 1024 - 10 - DEAD_LETTER_HEADROOM;
        assert_eq!(out.value.map(<[u8]>::len), Some(limit));
        assert_eq!(
            header(&out.headers, headers::ORIGINAL_SIZE),
            Some(&b"40000"[..])
        );
        assert_eq!(
            header(&out.headers, headers::ORIGINAL_SHA256),
            Some(sha256_hex(&big).as_bytes())
        );
    }
}
