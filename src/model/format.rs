//! The model file format.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"SSCMODEL"
//! 8       2     format version, u16 little-endian
//! 10      2     reserved, zero
//! 12      8     total file length in bytes, u64 LE (detects truncation)
//! 20      4     header length H, u32 LE
//! 24      H     header: UTF-8 JSON {metadata, text, features, classifier}
//! 24+H    4*N   weights: N = 2^features.bits f32 LE
//! end-32  32    SHA-256 of every byte before it
//! ```
//!
//! Decoding checks, in order: magic, version, length, checksum, then the header's contents.
//! Each failure is its own [`ModelFileError`] variant naming the problem.

use super::{Calibration, Metadata, Model, ModelParts};
use crate::features::{FeatureHasher, FeatureSettings, BITS_RANGE};
use crate::model::Label;
use crate::text::{HfTokenizerError, Pipeline, PipelineSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The first 8 bytes of every model file.
pub const MAGIC: &[u8; 8] = b"SSCMODEL";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;

const PREAMBLE_LEN: usize = 24;
const CHECKSUM_LEN: usize = 32;

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the model magic bytes.
    #[error("not a streamscore model file (wrong magic bytes)")]
    WrongFormat,
    /// The file is a model of a newer (or invalid) format version.
    #[error("model format version {found} is not supported (this build reads version {supported}); upgrade streamscore")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The file is shorter than its preamble says.
    #[error("model file is truncated: {actual} bytes, expected {expected}")]
    Truncated {
        /// Declared length.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The file is longer than its preamble says.
    #[error("model file has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Bytes past the declared length.
        extra: u64,
    },
    /// The checksum does not match the contents: the file was altered or damaged.
    #[error("model file checksum mismatch: the file is corrupted")]
    ChecksumMismatch,
    /// The header is not valid JSON of the expected shape.
    #[error("model header is invalid: {0}")]
    Header(#[from] serde_json::Error),
    /// The header parsed but its contents are inconsistent.
    #[error("model is invalid: {0}")]
    Invalid(String),
    /// The embedded Hugging Face tokenizer does not load.
    #[error("model tokenizer is invalid: {0}")]
    Tokenizer(#[from] HfTokenizerError),
}

/// The JSON header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    metadata: Metadata,
    text: PipelineSpec,
    features: FeatureSettings,
    classifier: ClassifierHeader,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierHeader {
    kind: String,
    bias: f32,
    calibration: Calibration,
    weights: u64,
    weight_encoding: String,
}

const CLASSIFIER_KIND: &str = "logistic_regression";
const WEIGHT_ENCODING: &str = "f32le";

/// Encodes a model into file bytes.
pub(super) fn encode(parts: &ModelParts) -> Result<Vec<u8>, ModelFileError> {
    let header = Header {
        metadata: parts.metadata.clone(),
        text: parts.text.clone(),
        features: parts.features.clone(),
        classifier: ClassifierHeader {
            kind: CLASSIFIER_KIND.into(),
            bias: parts.bias,
            calibration: parts.calibration,
            weights: parts.weights.len() as u64,
            weight_encoding: WEIGHT_ENCODING.into(),
        },
    };
    let json = serde_json::to_vec(&header)?;
    let total = PREAMBLE_LEN + json.len() + 4 * parts.weights.len() + CHECKSUM_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    let header_len = u32::try_from(json.len())
        .map_err(|_| ModelFileError::Invalid("header larger than 4 GiB".into()))?;
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&json);
    for w in &parts.weights {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Decodes and validates file bytes into a model.
pub(super) fn decode(bytes: &[u8]) -> Result<Model, ModelFileError> {
    let actual = bytes.len() as u64;
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            ModelFileError::Truncated {
                expected: PREAMBLE_LEN as u64,
                actual,
            }
        } else {
            ModelFileError::WrongFormat
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(ModelFileError::WrongFormat);
    }
    if bytes.len() < PREAMBLE_LEN {
        return Err(ModelFileError::Truncated {
            expected: PREAMBLE_LEN as u64,
            actual,
        });
    }
    let version = le_u16(&bytes[8..10]);
    if version != FORMAT_VERSION {
        return Err(ModelFileError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let expected = le_u64(&bytes[12..20]);
    if actual < expected {
        return Err(ModelFileError::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(ModelFileError::TrailingBytes {
            extra: actual - expected,
        });
    }
    if bytes.len() < PREAMBLE_LEN + CHECKSUM_LEN {
        return Err(ModelFileError::Invalid(
            "file too small to hold a checksum".into(),
        ));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let digest = Sha256::digest(body);
    if digest.as_slice() != checksum {
        return Err(ModelFileError::ChecksumMismatch);
    }
    let header_len = le_u32(&bytes[20..24]) as usize;
    let header_end = PREAMBLE_LEN
        .checked_add(header_len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| ModelFileError::Invalid("header length past end of file".into()))?;
    let header: Header = serde_json::from_slice(&body[PREAMBLE_LEN..header_end])?;
    let weights = decode_weights(&header, &body[header_end..])?;
    validate(&header)?;
    let pipeline = Pipeline::from_spec(&header.text)?;
    let version_hex: String = checksum[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Model {
        metadata: header.metadata,
        pipeline,
        hasher: FeatureHasher::new(header.features),
        weights,
        bias: header.classifier.bias,
        calibration: header.classifier.calibration,
        version: version_hex,
        bytes_len: bytes.len(),
    })
}

fn decode_weights(header: &Header, raw: &[u8]) -> Result<Box<[f32]>, ModelFileError> {
    let c = &header.classifier;
    if c.weight_encoding != WEIGHT_ENCODING {
        return Err(ModelFileError::Invalid(format!(
            "unknown weight encoding {:?}",
            c.weight_encoding
        )));
    }
    if raw.len() as u64 != c.weights.saturating_mul(4) {
        return Err(ModelFileError::Invalid(format!(
            "header declares {} weights but the file holds {} bytes of them",
            c.weights,
            raw.len()
        )));
    }
    let weights: Box<[f32]> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if weights.iter().any(|w| !w.is_finite()) {
        return Err(ModelFileError::Invalid("non-finite weight".into()));
    }
    Ok(weights)
}

fn validate(header: &Header) -> Result<(), ModelFileError> {
    let invalid = |m: String| Err(ModelFileError::Invalid(m));
    let c = &header.classifier;
    if c.kind != CLASSIFIER_KIND {
        return invalid(format!("unknown classifier kind {:?}", c.kind));
    }
    let bits = header.features.bits;
    if !BITS_RANGE.contains(&bits) {
        return invalid(format!(
            "feature bits {bits} outside {}..={}",
            BITS_RANGE.start(),
            BITS_RANGE.end()
        ));
    }
    if c.weights != 1u64 << bits {
        return invalid(format!(
            "{} weights for {bits} feature bits (expected {})",
            c.weights,
            1u64 << bits
        ));
    }
    if ![c.bias, c.calibration.a, c.calibration.b]
        .iter()
        .all(|v| v.is_finite())
    {
        return invalid("non-finite bias or calibration".into());
    }
    let expected: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
    if header.metadata.labels != expected {
        return invalid(format!(
            "labels {:?}, expected {expected:?}",
            header.metadata.labels
        ));
    }
    if let PipelineSpec::Tweet(t) = &header.text {
        if t.revision > crate::text::TWEET_REVISION {
            return invalid(format!(
                "tweet tokenizer revision {} is newer than this build's {}",
                t.revision,
                crate::text::TWEET_REVISION
            ));
        }
    }
    Ok(())
}
