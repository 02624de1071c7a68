//! `streamscore eval`.

use super::{existing_file, load_model};
use crate::dataset::Dataset;
use crate::evaluate::evaluate;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file (default: the embedded shipped model).
    #[arg(long, env = "STREAMSCORE_MODEL", value_parser = existing_file)]
    model: Option<PathBuf>,
    /// Labeled JSON-lines file {"text", "label"}.
    #[arg(long, value_parser = existing_file)]
    data: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let model = load_model(a.model.as_deref())?;
    let data = Dataset::read(&a.data)?;
    let r = evaluate(&model, &data.examples);
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = serde_json::json!({"name": model.metadata().name, "version": model.version()});
        v["data"] = serde_json::Value::String(data.summary.file.clone());
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "model      {} (version {})",
        model.metadata().name,
        model.version()
    );
    println!("data       {} ({} rows)", data.summary.file, r.rows);
    println!("accuracy   {:.4}", r.accuracy);
    println!("macro-F1   {:.4}", r.macro_f1);
    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9}",
        "class", "precision", "recall", "f1", "support"
    );
    for c in &r.classes {
        println!(
            "{:<10} {:>9.4} {:>9.4} {:>9.4} {:>9}",
            c.label.as_str(),
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    println!();
    println!("confusion (rows: truth, columns: predicted)");
    println!("{:<10} {:>9} {:>9}", "", "NEGATIVE", "POSITIVE");
    for (label, row) in ["NEGATIVE", "POSITIVE"].iter().zip(&r.confusion.counts) {
        println!("{label:<10} {:>9} {:>9}", row[0], row[1]);
    }
    println!();
    println!(
        "speed      {:.0} tweets/s (one thread)",
        r.tweets_per_second
    );
    Ok(ExitCode::SUCCESS)
}
