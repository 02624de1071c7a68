use super::*;
use crate::model::TrainingFile;
use chrono::TimeZone;

/// A synthetic corpus: positive tweets mention "sunny"/"love", negative ones "rain"/"hate",
/// with shared filler words, so the signal is obvious but not trivially one token.
pub(crate) fn fixture(n: usize) -> Dataset {
    let fillers = [
        "today", "the", "weekend", "my", "team", "this", "game", "at", "work",
    ];
    let pos = ["sunny", "love", "great", "awesome"];
    let neg = ["rain", "hate", "awful", "terrible"];
    let examples = (0..n)
        .map(|i| {
            let positive = i % 2 == 0;
            let cue = if positive {
                pos[i / 2 % 4]
            } else {
                neg[i / 2 % 4]
            };
            let text = format!(
                "{} {} {} {}",
                fillers[i % 9],
                cue,
                fillers[(i * 7 + 3) % 9],
                fillers[(i * 5 + 1) % 9]
            );
            Example {
                text,
                label: if positive {
                    Label::Positive
                } else {
                    Label::Negative
                },
            }
        })
        .collect();
    Dataset {
        examples,
        summary: TrainingFile {
            file: "fixture.jsonl".into(),
            rows: n as u64,
            positive: n.div_ceil(2) as u64,
            negative: (n / 2) as u64,
            sha256: "0".repeat(64),
            weight: 1.0,
        },
    }
}

fn small_config() -> TrainConfig {
    TrainConfig {
        features: FeatureSettings {
            bits: 14,
            ..FeatureSettings::default()
        },
        holdout: 0.1,
        ..TrainConfig::default()
    }
}

fn when() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

#[test]
fn learns_an_obvious_signal() {
    let data = fixture(2000);
    let sources = [Source {
        dataset: data.clone(),
        weight: 1.0,
    }];
    let t = train(
        &sources,
        Some(&data),
        &small_config(),
        &ProgressBar::hidden(),
        when(),
    )
    .unwrap();
    let holdout = t.holdout.unwrap();
    assert!(
        holdout.accuracy > 0.98,
        "holdout accuracy {}",
        holdout.accuracy
    );
    assert_eq!(
        t.model.score("so sunny and great today").label,
        Label::Positive
    );
    assert_eq!(
        t.model.score("rain again, I hate it").label,
        Label::Negative
    );
    assert!(t.model.score("love love love").probability > 0.8);
    let figures = &t.model.metadata().evaluation;
    assert_eq!(
        figures.iter().map(|e| e.set.as_str()).collect::<Vec<_>>(),
        ["holdout", "dev"]
    );
    assert_eq!(t.model.metadata().training[0].rows, 2000);
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let sources = [Source {
        dataset: fixture(600),
        weight: 1.0,
    }];
    let a = train(
        &sources,
        None,
        &small_config(),
        &ProgressBar::hidden(),
        when(),
    )
    .unwrap();
    let b = train(
        &sources,
        None,
        &small_config(),
        &ProgressBar::hidden(),
        when(),
    )
    .unwrap();
    assert_eq!(a.bytes, b.bytes);
    let other = TrainConfig {
        seed: 7,
        ..small_config()
    };
    let c = train(&sources, None, &other, &ProgressBar::hidden(), when()).unwrap();
    assert_ne!(a.bytes, c.bytes);
}

#[test]
fn refuses_one_class_data() {
    let mut d = fixture(100);
    d.examples.retain(|e| e.label == Label::Positive);
    let err = train(
        &[Source {
            dataset: d,
            weight: 1.0,
        }],
        None,
        &small_config(),
        &ProgressBar::hidden(),
        when(),
    );
    assert!(matches!(err, Err(TrainError::OneClass { negative: 0, .. })));
}

#[test]
fn trains_through_a_hugging_face_tokenizer() {
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
      "normalizer":{"type":"Lowercase"},"pre_tokenizer":{"type":"Whitespace"},
      "post_processor":null,"decoder":null,
      "model":{"type":"WordLevel","vocab":{"[UNK]":0,"sunny":1,"love":2,"great":3,"awesome":4,
        "rain":5,"hate":6,"awful":7,"terrible":8},"unk_token":"[UNK]"}}"#;
    let config = TrainConfig {
        text: PipelineSpec::HuggingFace {
            tokenizer_json: json.into(),
        },
        ..small_config()
    };
    let sources = [Source {
        dataset: fixture(1000),
        weight: 1.0,
    }];
    let t = train(&sources, None, &config, &ProgressBar::hidden(), when()).unwrap();
    assert!(t.holdout.unwrap().accuracy > 0.95);
    let reloaded = Model::from_bytes(&t.bytes).unwrap();
    assert!(matches!(reloaded.pipeline(), Pipeline::HuggingFace(_)));
    assert_eq!(reloaded.score("AWFUL rain").label, Label::Negative);
}
