//! The scoring context of the scorer-only measurements: a deployment reading JSON tweets from
//! `in`, writing to `out` and `out.dlq`.

use std::sync::Arc;
use streamscore::input::{InputFormat, InputSpec};
use streamscore::opinion::Subjects;
use streamscore::stream::ScoreContext;

/// A JSON-input deployment's context, matching `subjects` if given.
pub fn json_context(subjects: Option<Arc<Subjects>>) -> ScoreContext {
    ScoreContext {
        deployment: "bench".into(),
        input_topic: "in".into(),
        output_topic: "out".into(),
        dlq_topic: "out.dlq".into(),
        input: InputSpec {
            format: InputFormat::Json,
            ..InputSpec::default()
        },
        max_message_bytes: 1_000_000,
        subjects,
    }
}
