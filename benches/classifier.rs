//! Classifier throughput on one thread: one tweet at a time vs. batches of 512, from raw text,
//! plus the same model's features through a Hugging Face `tokenizers` pipeline for comparison.
//!
//! Texts: the dev set named by `STREAMSCORE_BENCH_DATA` (default
//! `../shared/data/tweeteval_sentiment_val_binary.jsonl`), else the repository's samples.
//! Run: `cargo bench --bench classifier`.

#[path = "common/texts.rs"]
mod texts;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use streamscore::model::{Model, ModelParts, Scratch};
use streamscore::text::PipelineSpec;
use texts::texts;

/// Resident set size of this process in bytes (Linux), for the model memory figure.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn load_default_model() -> Model {
    let before = rss_bytes();
    let model = Model::load(std::path::Path::new("models/sentiment-en.model"))
        .expect("models/sentiment-en.model loads");
    // Touch every weight so the figure is the model's full resident size.
    let mut sink = 0f32;
    for t in ["warm up", "touch"] {
        sink += model.margin(t, &mut Scratch::default());
    }
    black_box(sink);
    if let (Some(b), Some(a)) = (before, rss_bytes()) {
        eprintln!(
            "model resident memory: {:.1} MB (rss delta), weights {:.1} MB, file {:.1} MB",
            a.saturating_sub(b) as f64 / 1e6,
            model.weights_memory() as f64 / 1e6,
            model.file_size() as f64 / 1e6
        );
    }
    model
}

fn bench(c: &mut Criterion) {
    let texts = texts();
    let model = load_default_model();
    let mut g = c.benchmark_group("classifier");
    g.throughput(Throughput::Elements(texts.len() as u64));

    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(model.score(black_box(t)));
            }
        })
    });

    g.bench_function("batch_512", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            for chunk in texts.chunks(512) {
                out.clear();
                model.score_batch_into(black_box(chunk), &mut out);
                black_box(&out);
            }
        })
    });

    // Same weights behind a BERT-style Hugging Face pipeline (BertNormalizer +
    // BertPreTokenizer + WordLevel over the bench texts' own words): what the
    // `tokenizers` path costs per tweet.
    let hf = hf_model(&model, &texts);
    g.bench_function("hf_tokenizers_batch_512", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(512),
            |out| {
                for chunk in texts.chunks(512) {
                    out.clear();
                    hf.score_batch_into(black_box(chunk), out);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn hf_model(model: &Model, texts: &[String]) -> Model {
    let mut vocab = std::collections::BTreeMap::new();
    vocab.insert("[UNK]".to_string(), 0u32);
    for w in texts.iter().flat_map(|t| t.split_whitespace()) {
        let n = vocab.len() as u32;
        vocab.entry(w.to_lowercase()).or_insert(n);
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                        "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let parts = ModelParts {
        metadata: model.metadata().clone(),
        text: PipelineSpec::HuggingFace {
            tokenizer_json: json.to_string(),
        },
        features: model.feature_settings().clone(),
        weights: model.weights().to_vec(),
        bias: 0.0,
        calibration: Default::default(),
    };
    Model::from_parts(&parts).expect("hf model").0
}

criterion_group! {
    name = benches;
    config = Criterion::default().noise_threshold(0.05).sample_size(30);
    targets = bench
}
criterion_main!(benches);
