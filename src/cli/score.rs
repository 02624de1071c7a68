//! `streamscore score`.

use super::{existing_file, load_model};
use crate::input::{InputFormat, InputSpec};
use crate::score::score_lines;
use anyhow::Context;
use clap::Args;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model file (default: the embedded shipped model).
    #[arg(long, env = "STREAMSCORE_MODEL", value_parser = existing_file)]
    model: Option<PathBuf>,
    /// How to read each line: a JSON object, plain text, or JSON when it starts with `{`.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,
    /// JSON field that holds the text (`full_text` and `data.text` are tried after it).
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Input file; stdin when absent or `-`.
    file: Option<PathBuf>,
}

/// Runs `score`.
pub fn run(a: ScoreArgs) -> anyhow::Result<ExitCode> {
    let model = load_model(a.model.as_deref())?;
    let spec = InputSpec {
        format: a.format,
        text_field: a.text_field,
        ..InputSpec::default()
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match a.file.filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
            score_lines(
                &model,
                &spec,
                &mut BufReader::with_capacity(1 << 16, f),
                &mut out,
            )
        }
        None => score_lines(&model, &spec, &mut std::io::stdin().lock(), &mut out),
    };
    match result {
        Ok(summary) => {
            if summary.errors > 0 {
                eprintln!(
                    "{} lines scored, {} lines could not be scored",
                    summary.scored, summary.errors
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`score | head`) is a normal way to stop reading.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("scoring"),
    }
}
