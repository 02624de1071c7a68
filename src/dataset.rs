//! Labeled tweet files: JSON lines `{"text": "...", "label": "POSITIVE" | "NEGATIVE"}`.

use crate::model::{Label, TrainingFile};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A labeled file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a labeled example.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file holds no examples.
    #[error("{0}: no labeled examples")]
    Empty(PathBuf),
}

/// One labeled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The tweet.
    pub text: String,
    /// Its label.
    pub label: Label,
}

/// A labeled file, read whole.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Name, counts and hash of the file.
    pub summary: TrainingFile,
}

#[derive(Deserialize)]
struct Line {
    text: Option<String>,
    label: Option<String>,
}

impl Dataset {
    /// Reads a JSON-lines labeled file. Blank lines are skipped; any other bad line is an error
    /// that names the file and line.
    pub fn read(path: &Path) -> Result<Dataset, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |line: usize, reason: String| DatasetError::BadLine {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut examples = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line: Line = serde_json::from_slice(raw).map_err(|e| bad(i + 1, e.to_string()))?;
            let text = line
                .text
                .ok_or_else(|| bad(i + 1, "missing \"text\"".into()))?;
            let label = line
                .label
                .ok_or_else(|| bad(i + 1, "missing \"label\"".into()))?;
            let label = Label::parse(&label).ok_or_else(|| {
                bad(
                    i + 1,
                    format!("label {label:?} is not POSITIVE or NEGATIVE"),
                )
            })?;
            examples.push(Example { text, label });
        }
        if examples.is_empty() {
            return Err(DatasetError::Empty(path.to_owned()));
        }
        let positive = examples
            .iter()
            .filter(|e| e.label == Label::Positive)
            .count() as u64;
        let summary = TrainingFile {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: examples.len() as u64,
            positive,
            negative: examples.len() as u64 - positive,
            sha256: Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            weight: 1.0,
        };
        Ok(Dataset { examples, summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"text\":\"good\",\"label\":\"POSITIVE\"}\n\n{\"text\":\"bad\",\"label\":\"negative\"}\n",
        )
        .unwrap();
        let d = Dataset::read(&p).unwrap();
        assert_eq!(d.examples.len(), 2);
        assert_eq!((d.summary.positive, d.summary.negative), (1, 1));
        assert_eq!(d.summary.file, "d.jsonl");
        assert_eq!(d.summary.sha256.len(), 64);

        std::fs::write(
            &p,
            "{\"text\":\"good\",\"label\":\"POSITIVE\"}\n{\"text\":\"x\",\"label\":\"NEUTRAL\"}\n",
        )
        .unwrap();
        let err = Dataset::read(&p).unwrap_err().to_string();
        assert!(
            err.contains("d.jsonl:2") && err.contains("NEUTRAL"),
            "{err}"
        );
    }
}
