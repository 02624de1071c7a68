//! Turning consumed records into output or dead-letter records (the CPU work of a batch).

use crate::input::InputSpec;
use crate::model::{Model, Scratch};
use rdkafka::message::{Header, OwnedHeaders};
use serde::Serialize;
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

/// A consumed record, owned, waiting to be scored.
#[derive(Debug, Clone)]
pub struct InRecord {
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Record key, kept on the output.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Option<Vec<u8>>,
    /// Record timestamp (ms since the epoch), for latency.
    pub timestamp_ms: Option<i64>,
}

/// A record ready to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Source partition (for offset tracking).
    pub partition: i32,
    /// Source offset (for offset tracking).
    pub offset: i64,
    /// Destination topic.
    pub topic: Arc<str>,
    /// Key: the input's key.
    pub key: Option<Vec<u8>>,
    /// Value: output JSON, or the original bytes for a dead letter.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: OwnedHeaders,
    /// Dead-letter reason, when this is a dead letter.
    pub dead_letter: Option<&'static str>,
    /// Input timestamp, for end-to-end latency.
    pub timestamp_ms: Option<i64>,
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
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    prediction: &'static str,
    probability: f64,
    model: ModelRef<'a>,
    deployment: &'a str,
    source: Source<'a>,
    scored_at: &'a str,
}

#[derive(Serialize)]
struct ModelRef<'a> {
    context_id: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
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
}

fn source_headers(ctx: &ScoreContext, r: &InRecord) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: headers::SOURCE_TOPIC,
            value: Some(ctx.input_topic.as_bytes()),
        })
        .insert(Header {
            key: headers::SOURCE_PARTITION,
            value: Some(r.partition.to_string().as_bytes()),
        })
        .insert(Header {
            key: headers::SOURCE_OFFSET,
            value: Some(r.offset.to_string().as_bytes()),
        })
}

/// Scores a batch: every input record becomes exactly one output or dead-letter record, in
/// input order. Runs on a blocking thread; never panics on record content.
pub fn score_batch(
    serving: &ServingModel,
    ctx: &ScoreContext,
    records: Vec<InRecord>,
) -> Vec<OutRecord> {
    let scored_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let parsed = ctx.input.parse(r.payload.as_deref().unwrap_or_default());
        let rec = match parsed {
            Ok(p) => {
                let pred = serving.model.score_with(&p.text, &mut scratch);
                let value = serde_json::to_vec(&Output {
                    id: p.id.as_deref(),
                    prediction: pred.label.as_str(),
                    probability: (f64::from(pred.probability) * 10_000.0).round() / 10_000.0,
                    model: ModelRef {
                        context_id: &serving.context_id,
                        version: &serving.version,
                    },
                    deployment: &ctx.deployment,
                    source: Source {
                        topic: &ctx.input_topic,
                        partition: r.partition,
                        offset: r.offset,
                    },
                    scored_at: &scored_at,
                })
                // Serializing this struct of strings and numbers cannot fail.
                .unwrap_or_default();
                let headers = source_headers(ctx, &r).insert(Header {
                    key: headers::MODEL_VERSION,
                    value: Some(serving.version.as_bytes()),
                });
                OutRecord {
                    partition: r.partition,
                    offset: r.offset,
                    topic: ctx.output_topic.clone(),
                    key: r.key,
                    value,
                    headers,
                    dead_letter: None,
                    timestamp_ms: r.timestamp_ms,
                }
            }
            Err(e) => {
                let headers = source_headers(ctx, &r)
                    .insert(Header {
                        key: headers::ERROR_REASON,
                        value: Some(e.code().as_bytes()),
                    })
                    .insert(Header {
                        key: headers::ERROR_MESSAGE,
                        value: Some(e.to_string().as_bytes()),
                    });
                OutRecord {
                    partition: r.partition,
                    offset: r.offset,
                    topic: ctx.dlq_topic.clone(),
                    key: r.key,
                    value: r.payload.unwrap_or_default(),
                    headers,
                    dead_letter: Some(e.code()),
                    timestamp_ms: r.timestamp_ms,
                }
            }
        };
        out.push(rec);
    }
    out
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
        }
    }

    fn serving() -> ServingModel {
        ServingModel {
            model: Model::from_bytes(crate::cli::DEFAULT_MODEL).unwrap(),
            context_id: "sentiment".into(),
            version: "3".into(),
        }
    }

    fn rec(offset: i64, payload: &[u8]) -> InRecord {
        InRecord {
            partition: 2,
            offset,
            key: Some(format!("k{offset}").into_bytes()),
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(1),
        }
    }

    fn header<'a>(h: &'a OwnedHeaders, key: &str) -> Option<&'a [u8]> {
        h.iter().find(|x| x.key == key).and_then(|x| x.value)
    }

    #[test]
    fn every_record_becomes_one_output_in_order() {
        let records = vec![
            rec(5, br#"{"id_str": "1204", "text": "I love it"}"#),
            rec(6, b"\xff\xfe"),
            rec(7, b"{nope"),
            rec(8, br#"{"text": ""}"#),
            rec(9, br#"{"other": 1}"#),
        ];
        let out = score_batch(&serving(), &ctx(), records);
        assert_eq!(
            out.iter().map(|o| o.offset).collect::<Vec<_>>(),
            [5, 6, 7, 8, 9]
        );
        let v: serde_json::Value = serde_json::from_slice(&out[0].value).unwrap();
        assert_eq!(v["id"], "1204");
        assert_eq!(v["prediction"], "POSITIVE");
        assert_eq!(v["model"]["version"], "3");
        assert_eq!(v["source"]["offset"], 5);
        assert_eq!(v["deployment"], "dep-1");
        assert_eq!(&*out[0].topic, "out");
        assert_eq!(out[0].key.as_deref(), Some(&b"k5"[..]));
        assert_eq!(
            header(&out[0].headers, headers::MODEL_VERSION),
            Some(&b"3"[..])
        );
        assert_eq!(
            header(&out[0].headers, headers::SOURCE_OFFSET),
            Some(&b"5"[..])
        );
        let reasons: Vec<_> = out[1..].iter().map(|o| o.dead_letter.unwrap()).collect();
        assert_eq!(
            reasons,
            ["not_utf8", "invalid_json", "empty_text", "missing_text"]
        );
        assert!(out[1..].iter().all(|o| &*o.topic == "out.dlq"));
        assert_eq!(
            out[1].value, b"\xff\xfe",
            "dead letters keep the original bytes"
        );
        assert_eq!(
            header(&out[2].headers, headers::ERROR_REASON),
            Some(&b"invalid_json"[..])
        );
    }
}
