//! Deployment records on disk: one JSON file per API-created deployment, mode 0600 (they hold
//! Kafka credentials), written atomically.

use super::record::DeploymentRecord;
use super::{ControlError, Entry, Manager};
use crate::store::write_atomically_with_mode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::warn;

/// Reads every record in `dir` (creating it if needed); unreadable files are skipped with a
/// warning.
pub(super) fn load_records(dir: &Path) -> Result<BTreeMap<String, Entry>, ControlError> {
    let io = |source| ControlError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut entries = BTreeMap::new();
    for f in std::fs::read_dir(dir).map_err(io)?.flatten() {
        let path = f.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<DeploymentRecord>(&b).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(record) => {
                entries.insert(record.guid.clone(), Entry::new(record, None));
            }
            Err(error) => {
                warn!(file = %path.display(), %error, "skipping unreadable deployment record")
            }
        }
    }
    Ok(entries)
}

impl Manager {
    pub(super) fn record_path(&self, guid: &str) -> PathBuf {
        self.settings.state_dir.join(format!("{guid}.json"))
    }

    pub(super) fn persist(&self, r: &DeploymentRecord) -> Result<(), ControlError> {
        let path = self.record_path(&r.guid);
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        // The record holds Kafka credentials: owner-only.
        write_atomically_with_mode(&path, &bytes, 0o600)
            .map_err(|source| ControlError::Io { path, source })
    }
}
