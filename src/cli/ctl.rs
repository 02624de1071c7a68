//! `streamscore ctl`: the control socket's client, and `hash-password`.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control socket of the running daemon (before or after the subcommand).
    #[arg(
        long,
        global = true,
        env = "STREAMSCORE_SOCKET",
        default_value = "state/streamscore.sock"
    )]
    socket: PathBuf,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Status of every deployment, or of one.
    Status {
        /// Deployment id or name.
        deployment: Option<String>,
    },
    /// Start a deployment (resumes from its committed offsets); returns once running.
    Start {
        /// Deployment id or name.
        deployment: String,
    },
    /// Stop a deployment (drains, commits, leaves the group); returns once stopped.
    Stop {
        /// Deployment id or name.
        deployment: String,
    },
}

/// Runs `ctl`: sends one command line, prints the JSON reply; exit 1 when it says `ok: false`.
pub fn run(a: CtlArgs) -> anyhow::Result<ExitCode> {
    let line = match &a.command {
        CtlCommand::Status { deployment: None } => "status".to_owned(),
        CtlCommand::Status {
            deployment: Some(d),
        } => format!("status {d}"),
        CtlCommand::Start { deployment } => format!("start {deployment}"),
        CtlCommand::Stop { deployment } => format!("stop {deployment}"),
    };
    let mut stream = UnixStream::connect(&a.socket).with_context(|| {
        format!(
            "connecting to {} (is streamscore run up?)",
            a.socket.display()
        )
    })?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    let v: serde_json::Value =
        serde_json::from_str(reply.trim()).context("reading the daemon's reply")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(if v["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Arguments of `hash-password`.
#[derive(Debug, Args)]
pub struct HashPasswordArgs {}

/// Reads a password from stdin, prints its Argon2 hash for `[auth.users]`.
pub fn hash_password(_: HashPasswordArgs) -> anyhow::Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    let hash = crate::auth::hash_password(password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
