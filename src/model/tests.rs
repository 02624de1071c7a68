use super::*;
use crate::text::TweetSettings;
use chrono::TimeZone;

/// A small model with deterministic pseudo-random weights.
pub(crate) fn small_parts() -> ModelParts {
    let features = FeatureSettings {
        bits: 12,
        ..FeatureSettings::default()
    };
    let mut x: u32 = 12345;
    let weights = (0..1usize << features.bits)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as f32 / 32768.0) - 1.0
        })
        .collect();
    ModelParts {
        metadata: Metadata {
            name: "test".into(),
            labels: vec!["NEGATIVE".into(), "POSITIVE".into()],
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            training: vec![],
            hyper_parameters: Default::default(),
            evaluation: vec![],
        },
        text: PipelineSpec::Tweet(TweetSettings::default()),
        features,
        weights,
        bias: 0.1,
        calibration: Calibration { a: 1.5, b: -0.2 },
    }
}

use chrono::Utc;

const TEXTS: &[&str] = &[
    "I love this :)",
    "worst day ever, not happy",
    "",
    "😂😂😂",
    "@user http://x.y #blessed sooooo good!!!",
];

#[test]
fn save_load_round_trip_scores_identically() {
    let (model, bytes) = Model::from_parts(&small_parts()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.model");
    std::fs::write(&path, &bytes).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(model.version(), loaded.version());
    assert_eq!(model.metadata(), loaded.metadata());
    for t in TEXTS {
        assert_eq!(model.score(t), loaded.score(t));
        assert_eq!(
            model.margin(t, &mut Scratch::default()).to_bits(),
            loaded.margin(t, &mut Scratch::default()).to_bits()
        );
    }
    assert_eq!(
        model.score_batch(TEXTS),
        TEXTS.iter().map(|t| model.score(t)).collect::<Vec<_>>()
    );
}

fn bytes() -> Vec<u8> {
    Model::from_parts(&small_parts()).unwrap().1
}

#[test]
fn refuses_wrong_format() {
    let err = Model::from_bytes(b"PK\x03\x04 this is a zip file, not a model").unwrap_err();
    assert!(matches!(err, ModelFileError::WrongFormat), "{err}");
    assert!(matches!(
        Model::from_bytes(b"").unwrap_err(),
        ModelFileError::WrongFormat
    ));
}

#[test]
fn refuses_future_version() {
    let mut b = bytes();
    b[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Model::from_bytes(&b).unwrap_err();
    assert!(
        matches!(err, ModelFileError::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade"));
}

#[test]
fn refuses_truncated() {
    let b = bytes();
    for cut in [b.len() - 1, b.len() / 2, 30, 20, 5] {
        let err = Model::from_bytes(&b[..cut]).unwrap_err();
        assert!(
            matches!(err, ModelFileError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(
        Model::from_bytes(&longer).unwrap_err(),
        ModelFileError::TrailingBytes { extra: 1 }
    ));
}

#[test]
fn refuses_any_bit_flip() {
    let b = bytes();
    // Flip a bit in the header, in the weights and in the checksum itself.
    for pos in [30, b.len() / 2, b.len() - 40, b.len() - 1] {
        let mut c = b.clone();
        c[pos] ^= 0x10;
        let err = Model::from_bytes(&c).unwrap_err();
        assert!(
            matches!(err, ModelFileError::ChecksumMismatch),
            "pos {pos}: {err}"
        );
    }
}

#[test]
fn refuses_inconsistent_header_even_with_valid_checksum() {
    let mut parts = small_parts();
    parts.weights.pop();
    let err = Model::from_parts(&parts).unwrap_err();
    assert!(matches!(err, ModelFileError::Invalid(_)), "{err}");
    let mut parts = small_parts();
    parts.metadata.labels = vec!["A".into(), "B".into()];
    assert!(matches!(
        Model::from_parts(&parts).unwrap_err(),
        ModelFileError::Invalid(_)
    ));
}

#[test]
fn handle_swaps_atomically_while_old_model_stays_usable() {
    let (a, _) = Model::from_parts(&small_parts()).unwrap();
    let mut parts = small_parts();
    parts.bias = 5.0;
    let (b, _) = Model::from_parts(&parts).unwrap();
    let handle = ModelHandle::new(Arc::new(a));
    let old = handle.current();
    let replaced = handle.swap(Arc::new(b));
    assert_eq!(old.version(), replaced.version());
    assert_ne!(handle.current().version(), old.version());
    // The old Arc still scores.
    let _ = old.score("still works");
}
