//! The local control socket: a Unix socket (mode 0600) speaking one-line commands.
//!
//! ```text
//! status            → {"ok": true, "deployments": [{"id", "name", "status", "reason", ...}]}
//! status ID|NAME    → {"ok": true, "deployment": {...}}
//! start ID|NAME     → {"ok": true} once running again (from the committed offsets)
//! stop ID|NAME      → {"ok": true} once drained and committed
//! ```
//! Errors: `{"ok": false, "error": "..."}`. `streamscore ctl` is the client.

use super::{Manager, View};
use crate::control::record::Desired;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Longest accepted command line.
const MAX_LINE: usize = 4096;

/// A deployment as the socket reports it.
pub fn summary(v: &View) -> Value {
    let reason = v.status.reason();
    json!({
        "id": v.record.guid,
        "name": v.record.name,
        "status": v.status.as_str(),
        "reason": reason,
        "model": v.record.published_model_id,
        "model_version": v.model_version,
        "input": v.record.input.source.topic,
        "output": v.record.output.target.topic,
        "counters": v.stats,
    })
}

/// Binds the socket (removing a stale file first) and restricts it to its owner. The daemon
/// binds it before it announces its HTTP address, so a client that sees the daemon up finds
/// the socket there too.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => info!(socket = %path.display(), "removed stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    info!(socket = %path.display(), "control socket listening");
    Ok(listener)
}

/// Serves the socket [`bind`] returned until `stop` is cancelled, then removes its file.
pub async fn serve(
    listener: UnixListener,
    path: &Path,
    manager: Arc<Manager>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let manager = manager.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, manager).await {
                            warn!(error = %e, "control socket client");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "control socket accept"),
            }
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn handle(stream: tokio::net::UnixStream, manager: Arc<Manager>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    // Bounded: a connection reads at most 16 maximal lines in all.
    let mut reader = BufReader::new(read.take(MAX_LINE as u64 * 16));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        let reply = if buf.len() > MAX_LINE {
            json!({"ok": false, "error": "command too long"})
        } else {
            match std::str::from_utf8(&buf) {
                Ok(line) => execute(line.trim(), &manager).await,
                Err(_) => json!({"ok": false, "error": "a command is one line of UTF-8 text"}),
            }
        };
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
}

use tokio::io::AsyncReadExt;

/// Runs one command line and returns its reply.
pub async fn execute(line: &str, manager: &Arc<Manager>) -> Value {
    // The argument is the rest of the line, so names with spaces work.
    let (cmd, arg) = match line.split_once(char::is_whitespace) {
        Some((c, rest)) if !rest.trim().is_empty() => (c, Some(rest.trim())),
        Some((c, _)) => (c, None),
        None => (line, None),
    };
    let result = match (cmd, arg) {
        ("status", None) => {
            let all: Vec<Value> = manager.list().await.iter().map(summary).collect();
            Ok(json!({"ok": true, "deployments": all}))
        }
        ("status", Some(id)) => manager
            .get(id)
            .await
            .map(|v| json!({"ok": true, "deployment": summary(&v)})),
        ("start", Some(id)) => manager
            .set_desired(id, Desired::Running)
            .await
            .map(|()| json!({"ok": true})),
        ("stop", Some(id)) => manager
            .set_desired(id, Desired::Stopped)
            .await
            .map(|()| json!({"ok": true})),
        ("start" | "stop", None) => {
            return json!({"ok": false, "error": format!("usage: {cmd} ID|NAME")})
        }
        _ => {
            return json!({"ok": false, "error": "unknown command; use status [ID|NAME], start ID|NAME, stop ID|NAME"})
        }
    };
    result.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
}
