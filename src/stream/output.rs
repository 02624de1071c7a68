//! The output record's JSON, written by hand: what is the same for every record of a batch
//! (model, deployment, topic, `scored_at`) is escaped once per batch into a template, and each
//! record adds only its id, label, probability, partition and offset.
//!
//! The bytes are exactly what `serde_json` writes for the documented output shape (a test
//! compares them with a derived `Serialize` struct); serializing that struct per record
//! spent a third of the scorer's own time escaping the same constant strings again.

use super::record::ServingModel;
use super::ScoreContext;
use crate::model::Label;
use crate::opinion::Subjects;
use serde::Serialize;

/// One batch's constant parts of the output JSON.
#[derive(Debug, Default)]
pub struct OutputTemplate {
    /// From `"model"` up to the partition's value.
    middle: Vec<u8>,
    /// From after the offset's value up to `scored_at`'s closing quote.
    tail: Vec<u8>,
}

/// What one scored record adds to its batch's template.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    /// The input's id, when it has one.
    pub id: Option<&'a str>,
    /// The predicted label.
    pub label: Label,
    /// The label's probability (written rounded to 4 decimals).
    pub probability: f32,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Subjects matched (mask), written when the deployment has subjects.
    pub subjects: Option<(&'a Subjects, u32)>,
}

impl OutputTemplate {
    /// Rebuilds the template for a batch scored by `serving` at `scored_at`.
    pub fn begin(&mut self, serving: &ServingModel, ctx: &ScoreContext, scored_at: &str) {
        self.middle.clear();
        self.middle.extend_from_slice(br#","model":{"context_id":"#);
        json_str(&mut self.middle, &serving.context_id);
        self.middle.extend_from_slice(br#","version":"#);
        json_str(&mut self.middle, &serving.version);
        self.middle.extend_from_slice(br#"},"deployment":"#);
        json_str(&mut self.middle, &ctx.deployment);
        self.middle.extend_from_slice(br#","source":{"topic":"#);
        json_str(&mut self.middle, &ctx.input_topic);
        self.middle.extend_from_slice(br#","partition":"#);
        self.tail.clear();
        self.tail.extend_from_slice(br#"},"scored_at":"#);
        json_str(&mut self.tail, scored_at);
    }

    /// Whether [`begin`](Self::begin) has built this template.
    pub fn is_begun(&self) -> bool {
        !self.middle.is_empty()
    }

    /// Writes one record's output JSON into `buf` (cleared first).
    pub fn write(&self, buf: &mut Vec<u8>, r: &Scored<'_>) {
        buf.clear();
        buf.push(b'{');
        if let Some(id) = r.id {
            buf.extend_from_slice(br#""id":"#);
            json_str(buf, id);
            buf.push(b',');
        }
        buf.extend_from_slice(br#""prediction":""#);
        buf.extend_from_slice(r.label.as_str().as_bytes());
        buf.extend_from_slice(br#"","probability":"#);
        let probability = (f64::from(r.probability) * 10_000.0).round() / 10_000.0;
        // Writing a number into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &probability);
        buf.extend_from_slice(&self.middle);
        buf.extend_from_slice(itoa::Buffer::new().format(r.partition).as_bytes());
        buf.extend_from_slice(br#","offset":"#);
        buf.extend_from_slice(itoa::Buffer::new().format(r.offset).as_bytes());
        buf.extend_from_slice(&self.tail);
        if let Some((subjects, mask)) = r.subjects {
            buf.extend_from_slice(br#","subjects":"#);
            let _ = serde_json::to_writer(&mut *buf, &SubjectNames(subjects, mask));
        }
        buf.push(b'}');
    }
}

/// Appends `s` as a JSON string (quoted and escaped as `serde_json` does).
fn json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(buf, s);
}

/// The names of the subjects in a match mask, serialized as a JSON array.
struct SubjectNames<'a>(&'a Subjects, u32);

impl Serialize for SubjectNames<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.names_in(self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::InputSpec;
    use crate::model::Model;

    /// The documented output shape, serialized by `serde_json`: what the template must match.
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
        #[serde(skip_serializing_if = "Option::is_none")]
        subjects: Option<SubjectNames<'a>>,
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

    fn serde_bytes(s: &ServingModel, ctx: &ScoreContext, at: &str, r: &Scored<'_>) -> Vec<u8> {
        serde_json::to_vec(&Output {
            id: r.id,
            prediction: r.label.as_str(),
            probability: (f64::from(r.probability) * 10_000.0).round() / 10_000.0,
            model: ModelRef {
                context_id: &s.context_id,
                version: &s.version,
            },
            deployment: &ctx.deployment,
            source: Source {
                topic: &ctx.input_topic,
                partition: r.partition,
                offset: r.offset,
            },
            scored_at: at,
            subjects: r.subjects.map(|(s, m)| SubjectNames(s, m)),
        })
        .unwrap()
    }

    #[test]
    fn the_template_writes_what_serde_writes_for_awkward_values_too() {
        let config = [("a.b", "coffee"), ("c-d", "tea")]
            .map(|(n, k)| (n.to_owned(), vec![k.to_owned()]))
            .into_iter()
            .collect();
        let subjects = Subjects::compile(&config).unwrap();
        let serving = ServingModel {
            model: Model::from_bytes(crate::model::DEFAULT_MODEL).unwrap(),
            context_id: "senti\"ment\n".into(),
            version: "3\u{1}é".into(),
        };
        let ctx = ScoreContext {
            deployment: "dép\\loy".into(),
            input_topic: "in\t".into(),
            output_topic: "out".into(),
            dlq_topic: "out.dlq".into(),
            input: InputSpec::default(),
            max_message_bytes: 1 << 20,
            subjects: None,
        };
        let at = "2026-11-29T10:00:00.123Z";
        let mut t = OutputTemplate::default();
        t.begin(&serving, &ctx, at);
        let mut buf = Vec::new();
        let ids = [None, Some("1204"), Some("é\"\u{7f}\u{0}😀")];
        let probabilities = [0.0, 0.5, 0.93, 0.123_456_79, 1.0, 0.999_95, f32::NAN];
        for (i, &id) in ids.iter().enumerate() {
            for (k, &probability) in probabilities.iter().enumerate() {
                for mask in [None, Some(0), Some(1), Some(3)] {
                    let r = Scored {
                        id,
                        label: if k % 2 == 0 {
                            Label::Positive
                        } else {
                            Label::Negative
                        },
                        probability,
                        partition: i as i32 * 7 - 1,
                        offset: (k as i64) << 40,
                        subjects: mask.map(|m| (&subjects, m)),
                    };
                    t.write(&mut buf, &r);
                    assert_eq!(
                        String::from_utf8_lossy(&buf),
                        String::from_utf8_lossy(&serde_bytes(&serving, &ctx, at, &r)),
                        "{r:?}"
                    );
                }
            }
        }
        let parsed: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(parsed["model"]["context_id"], "senti\"ment\n");
        assert_eq!(parsed["subjects"][1], "c-d");
    }
}
