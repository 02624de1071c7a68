//! The command line: argument definitions and dispatch. Each command lives in its own file.

mod ctl;
mod eval;
mod run;
mod score;
mod topics;
mod train;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::model::Model;

/// streamscore: score tweet sentiment, from files or Kafka streams.
#[derive(Debug, Parser)]
#[command(name = "streamscore", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a sentiment model from labeled JSON-lines files.
    Train(train::TrainArgs),
    /// Measure a model on a labeled JSON-lines file.
    Eval(eval::EvalArgs),
    /// Label tweets from a file or stdin, one JSON object per line out.
    Score(score::ScoreArgs),
    /// Run the streaming daemon: Kafka in, labels out.
    Run(Box<run::RunArgs>),
    /// Create, feed and read Kafka topics (for local setups and scripts).
    Topics(topics::TopicsArgs),
    /// Talk to a running daemon over its control socket.
    Ctl(ctl::CtlArgs),
    /// Hash a password (read from stdin) for the `[auth.users]` table.
    HashPassword(ctl::HashPasswordArgs),
}

/// Parses the command line and runs the command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Score(a) => score::run(a),
        Command::Run(a) => run::run(*a),
        Command::Topics(a) => topics::run(a),
        Command::Ctl(a) => ctl::run(a),
        Command::HashPassword(a) => ctl::hash_password(a),
    }
}

/// Loads the model at `path`, or the embedded default model when there is none.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    use anyhow::Context;
    Model::load_or_default(path).with_context(|| match path {
        Some(p) => format!("loading model {}", p.display()),
        None => "loading the embedded default model".into(),
    })
}

/// Entry point used by `main`: parse, run, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A path argument that must name an existing file.
fn existing_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no such file: {s}"))
    }
}
