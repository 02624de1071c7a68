//! Streaming line scorer behind `streamscore score`: lines in, one JSON object per line out.
//!
//! Lines are scored in batches of whatever input is already buffered (at most
//! [`MAX_BATCH`]), and output is flushed whenever the reader would block, so the command is
//! both fast on files and responsive in an interactive pipe.

use crate::input::InputSpec;
use crate::model::Model;
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// Largest number of lines scored together.
pub const MAX_BATCH: usize = 512;

/// Counts of a finished run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScoreSummary {
    /// Lines labeled.
    pub scored: u64,
    /// Lines answered with an error object.
    pub errors: u64,
}

enum Pending {
    Ok { id: Option<String>, text: String },
    Err { error: String, code: &'static str },
}

/// Reads lines from `input`, writes one JSON object per non-blank line to `output`.
pub fn score_lines(
    model: &Model,
    spec: &InputSpec,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> std::io::Result<ScoreSummary> {
    let mut summary = ScoreSummary::default();
    let mut line = Vec::new();
    let mut pending: Vec<(u64, Pending)> = Vec::with_capacity(MAX_BATCH);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n > 0 {
            line_no += 1;
            let raw = trim_newline(&line);
            if !raw.iter().all(u8::is_ascii_whitespace) {
                let p = match spec.parse(raw) {
                    Ok(p) => Pending::Ok {
                        id: p.id,
                        text: p.text,
                    },
                    Err(e) => Pending::Err {
                        error: e.to_string(),
                        code: e.code(),
                    },
                };
                pending.push((line_no, p));
            }
        }
        let eof = n == 0;
        if eof || pending.len() >= MAX_BATCH || input.fill_buf()?.is_empty() {
            write_batch(model, &mut pending, output, &mut summary)?;
            output.flush()?;
        }
        if eof {
            return Ok(summary);
        }
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn write_batch(
    model: &Model,
    pending: &mut Vec<(u64, Pending)>,
    out: &mut impl Write,
    summary: &mut ScoreSummary,
) -> std::io::Result<()> {
    let texts: Vec<&str> = pending
        .iter()
        .filter_map(|(_, p)| match p {
            Pending::Ok { text, .. } => Some(text.as_str()),
            Pending::Err { .. } => None,
        })
        .collect();
    let mut predictions = model.score_batch(&texts).into_iter();
    let model_ref = json!({"name": model.metadata().name, "version": model.version()});
    for (line, p) in pending.drain(..) {
        let obj = match p {
            Pending::Ok { id, .. } => {
                let Some(pred) = predictions.next() else {
                    break;
                };
                summary.scored += 1;
                let mut o = json!({
                    "prediction": pred.label.as_str(),
                    "probability": round4(pred.probability),
                    "model": model_ref,
                });
                if let Some(id) = id {
                    o["id"] = Value::String(id);
                }
                o
            }
            Pending::Err { error, code } => {
                summary.errors += 1;
                json!({"line": line, "error": error, "reason": code})
            }
        };
        serde_json::to_writer(&mut *out, &obj)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Rounds a probability to 4 decimals for display.
fn round4(p: f32) -> f64 {
    (f64::from(p) * 10_000.0).round() / 10_000.0
}
