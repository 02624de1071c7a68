//! The model store: every uploaded model kept on disk as a numbered version per context id.
//!
//! ```text
//! <root>/<context_id>/v<N>.json    {file_name, uploaded_at, size, sha256}
//! <root>/<context_id>/v<N>.model   the uploaded bytes, exactly
//! ```
//!
//! A version exists once its `.model` file does: the metadata is written first and the model
//! file is renamed into place last, each through a temporary file, so a crash never leaves a
//! half-written version behind. An upload is validated by loading it fully before anything is
//! written.
//!
//! An upload arriving over HTTP is streamed to a staging file first
//! (`<root>/uploads~/`, a name no context id can take; emptied at start), so a slow client
//! costs disk, not memory; accepting it is a rename.

use crate::model::{Model, ModelFileError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The context id is not a safe, simple name.
    #[error(
        "invalid context id {0:?}: use 1-128 letters, digits, '-', '_' or '.' (not only dots)"
    )]
    BadContextId(String),
    /// The uploaded bytes are not a valid model.
    #[error("invalid model file: {0}")]
    BadModel(#[from] ModelFileError),
    /// The upload is empty.
    #[error("the model file is empty")]
    Empty,
    /// No model under that context id.
    #[error("no model deployed under context id {0:?}")]
    NotFound(String),
    /// The disk said no.
    #[error("model store I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What the store knows of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Context id.
    pub context_id: String,
    /// Version number, from 1.
    pub version: u64,
    /// File name the upload carried (sanitized).
    pub file_name: String,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// The staging folder under the root: `~` is not allowed in context ids.
const STAGING: &str = "uploads~";

/// The on-disk model store.
#[derive(Debug)]
pub struct ModelStore {
    root: PathBuf,
    /// Serializes writers so two uploads to one context id get distinct versions.
    write_lock: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks that `id` is safe as a single path component.
pub fn validate_context_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.chars().all(|c| c == '.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadContextId(id.to_owned()))
    }
}

/// Keeps the last path component of an uploaded file name, without quotes or control
/// characters, so it is safe in a `Content-Disposition` header.
pub fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
        .take(200)
        .collect();
    if clean.trim().is_empty() || clean.chars().all(|c| c == '.') {
        "model.bin".into()
    } else {
        clean
    }
}

/// Writes `bytes` to `path` via a temporary file in the same folder, synced, then renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with_mode(path, bytes, 0o644)
}

/// [`write_atomically`] with the file created with Unix permissions `mode` (e.g. `0o600` for
/// files holding secrets), so it is never readable more widely, not even briefly.
pub fn write_atomically_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl ModelStore {
    /// Opens (creating if needed) the store under `root`, removing temporary files a crash
    /// may have left.
    pub fn open(root: &Path) -> Result<ModelStore, StoreError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        // Uploads a crash interrupted.
        let staging = root.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        for dir in std::fs::read_dir(root).map_err(io(root))?.flatten() {
            if let Ok(entries) = std::fs::read_dir(dir.path()) {
                for e in entries.flatten() {
                    let ext = e
                        .path()
                        .extension()
                        .map(|x| x.to_string_lossy().into_owned());
                    if ext.is_some_and(|x| x.starts_with("tmp")) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Ok(ModelStore {
            root: root.to_owned(),
            write_lock: Mutex::new(()),
        })
    }

    fn dir(&self, context_id: &str) -> Result<PathBuf, StoreError> {
        validate_context_id(context_id)?;
        Ok(self.root.join(context_id))
    }

    /// Versions present for `context_id`, ascending.
    pub fn versions(&self, context_id: &str) -> Result<Vec<u64>, StoreError> {
        let dir = self.dir(context_id)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(vec![]);
        };
        let mut v: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix('v')?.strip_suffix(".model")?.parse().ok()
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Context ids with at least one version, sorted.
    pub fn context_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| validate_context_id(id).is_ok())
            .filter(|id| self.versions(id).is_ok_and(|v| !v.is_empty()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Validates and stores an upload as the next version of `context_id`; returns its info
    /// and the loaded model. Nothing is written when validation fails.
    pub fn put(
        &self,
        context_id: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<(VersionInfo, Model), StoreError> {
        self.put_with(context_id, file_name, bytes, |path| {
            write_atomically(path, bytes)
        })
    }

    /// A new, empty staging file for an upload, removed when dropped unless
    /// [`put_staged`](Self::put_staged) takes it.
    pub fn stage(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.root.join(STAGING);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&dir)
            .map_err(io(&dir))
    }

    /// [`put`](Self::put) for an upload written to a [`stage`](Self::stage) file: read once to
    /// validate, then renamed into place.
    pub fn put_staged(
        &self,
        context_id: &str,
        file_name: &str,
        staged: tempfile::NamedTempFile,
    ) -> Result<(VersionInfo, Model), StoreError> {
        let bytes = std::fs::read(staged.path()).map_err(io(staged.path()))?;
        self.put_with(context_id, file_name, &bytes, move |path| {
            use std::os::unix::fs::PermissionsExt;
            staged
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
            staged.as_file().sync_all()?;
            staged.persist(path).map(drop).map_err(|e| e.error)
        })
    }

    /// Validates `bytes`, writes the metadata of the next version, then `place`s the model
    /// file at its path.
    fn put_with(
        &self,
        context_id: &str,
        file_name: &str,
        bytes: &[u8],
        place: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(VersionInfo, Model), StoreError> {
        let dir = self.dir(context_id)?;
        if bytes.is_empty() {
            return Err(StoreError::Empty);
        }
        let model = Model::from_bytes(bytes)?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let version = self.versions(context_id)?.last().copied().unwrap_or(0) + 1;
        let info = VersionInfo {
            context_id: context_id.to_owned(),
            version,
            file_name: sanitize_file_name(file_name),
            uploaded_at: Utc::now(),
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        };
        let meta_path = dir.join(format!("v{version}.json"));
        let meta = serde_json::to_vec_pretty(&info).unwrap_or_default();
        write_atomically(&meta_path, &meta).map_err(io(&meta_path))?;
        let model_path = dir.join(format!("v{version}.model"));
        place(&model_path).map_err(io(&model_path))?;
        Ok((info, model))
    }

    /// The model file of a version, opened for reading (a download streams it).
    pub fn open_version(&self, info: &VersionInfo) -> Result<std::fs::File, StoreError> {
        let path = self.model_path(info)?;
        std::fs::File::open(&path).map_err(io(&path))
    }

    fn model_path(&self, info: &VersionInfo) -> Result<PathBuf, StoreError> {
        Ok(self
            .dir(&info.context_id)?
            .join(format!("v{}.model", info.version)))
    }

    /// Info of the newest version of `context_id`.
    pub fn latest(&self, context_id: &str) -> Result<VersionInfo, StoreError> {
        let dir = self.dir(context_id)?;
        let version = *self
            .versions(context_id)?
            .last()
            .ok_or_else(|| StoreError::NotFound(context_id.to_owned()))?;
        let meta_path = dir.join(format!("v{version}.json"));
        let meta = std::fs::read(&meta_path).map_err(io(&meta_path))?;
        serde_json::from_slice(&meta).map_err(|e| StoreError::Io {
            path: meta_path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// The bytes of a version.
    pub fn read(&self, info: &VersionInfo) -> Result<Vec<u8>, StoreError> {
        let path = self.model_path(info)?;
        std::fs::read(&path).map_err(io(&path))
    }

    /// Loads the newest version of `context_id`.
    pub fn load_latest(&self, context_id: &str) -> Result<(VersionInfo, Model), StoreError> {
        let info = self.latest(context_id)?;
        let model = Model::from_bytes(&self.read(&info)?)?;
        Ok((info, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_MODEL;

    #[test]
    fn versions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let (a, _) = store
            .put("sentiment", "first.model", DEFAULT_MODEL)
            .unwrap();
        let (b, _) = store
            .put("sentiment", "../../etc/second.model", DEFAULT_MODEL)
            .unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert_eq!(b.file_name, "second.model");
        let reopened = ModelStore::open(dir.path()).unwrap();
        assert_eq!(reopened.latest("sentiment").unwrap(), b);
        assert_eq!(reopened.read(&b).unwrap(), DEFAULT_MODEL);
        assert_eq!(reopened.context_ids().unwrap(), ["sentiment"]);
    }

    #[test]
    fn staged_uploads_are_renamed_into_place_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let staging = dir.path().join(STAGING);
        let mut good = store.stage().unwrap();
        good.write_all(DEFAULT_MODEL).unwrap();
        let (info, _) = store.put_staged("m", "m.model", good).unwrap();
        assert_eq!(store.read(&info).unwrap(), DEFAULT_MODEL);
        let mut bad = store.stage().unwrap();
        bad.write_all(&DEFAULT_MODEL[..100]).unwrap();
        assert!(store.put_staged("m", "bad.model", bad).is_err());
        assert_eq!(
            store.versions("m").unwrap(),
            [1],
            "a refused upload writes nothing"
        );
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "nothing staged is left"
        );
        // A crash mid-upload leaves a staging file: the next start removes it, and it is never
        // taken for a context id.
        let (_, left) = store.stage().unwrap().keep().unwrap();
        assert!(left.exists());
        let reopened = ModelStore::open(dir.path()).unwrap();
        assert!(!left.exists());
        assert_eq!(reopened.context_ids().unwrap(), ["m"]);
        assert!(validate_context_id(STAGING).is_err());
    }

    #[test]
    fn refused_uploads_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        store.put("m", "ok.model", DEFAULT_MODEL).unwrap();
        let mut flipped = DEFAULT_MODEL.to_vec();
        flipped[1000] ^= 4;
        let bad: [&[u8]; 4] = [b"", &DEFAULT_MODEL[..100], &flipped, b"PK\x03\x04zip"];
        for b in bad {
            assert!(store.put("m", "bad.model", b).is_err());
        }
        assert_eq!(store.versions("m").unwrap(), [1]);
        assert_eq!(std::fs::read_dir(dir.path().join("m")).unwrap().count(), 2);
    }

    #[test]
    fn path_like_context_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        for id in ["../x", "..", "a/b", "", "a\\b", "."] {
            assert!(
                matches!(
                    store.put(id, "f", DEFAULT_MODEL),
                    Err(StoreError::BadContextId(_))
                ),
                "{id}"
            );
        }
        assert!(matches!(store.latest("nope"), Err(StoreError::NotFound(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
