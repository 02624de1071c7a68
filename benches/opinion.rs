//! The CPU cost of the opinion features per record, on one thread, against the scorer's own
//! work in the same process: a batch of 512 JSON tweets encoded (parse, score, JSON output)
//! (1) as a deployment without subjects does, (2) with five subjects matched and listed in the
//! output, (3) with (2) plus the window tally and the batch merged into the deployment's
//! opinion state, as the scorer does.
//!
//! Texts: the dev set named by `STREAMSCORE_BENCH_DATA` (default
//! `../shared/data/tweeteval_sentiment_val_binary.jsonl`), else the repository's samples.
//! Run: `cargo bench --bench opinion`.

#[path = "common/context.rs"]
mod context;
#[path = "common/texts.rs"]
mod texts;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use streamscore::model::{Label, Model};
use streamscore::opinion::{Opinion, SubjectsConfig, SummaryConfig};
use streamscore::stream::record::Encoder;
use streamscore::stream::{ScoreContext, ServingModel};
use texts::texts;

const BATCH: usize = 512;

fn records() -> Vec<Vec<u8>> {
    let texts = texts();
    (0..BATCH)
        .map(|i| {
            serde_json::json!({"id": i.to_string(), "text": texts[i % texts.len()]})
                .to_string()
                .into_bytes()
        })
        .collect()
}

fn subjects() -> SubjectsConfig {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    [
        ("love", s(&["love", "#love"])),
        ("work", s(&["work", "job", "office"])),
        ("weather", s(&["weather", "rain", "sun", "#weather"])),
        ("acme", s(&["acme", "@acme", "#acmephone", "acme phone"])),
        ("day", s(&["day", "today", "tonight"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn context(opinion: Option<&Opinion>) -> ScoreContext {
    context::json_context(opinion.and_then(|o| o.subjects().cloned()))
}

/// Encodes the batch as the scorer does; with `opinion`, also tallies and merges it.
fn encode_batch(
    serving: &ServingModel,
    ctx: &ScoreContext,
    enc: &mut Encoder,
    batch: &[Vec<u8>],
    opinion: Option<&Opinion>,
    round: &mut i64,
) -> usize {
    let mut bytes = 0;
    let mut tally = opinion.map(Opinion::tally);
    enc.begin_batch(serving, ctx);
    enc.samples.wanted = opinion.is_some();
    for (i, r) in batch.iter().enumerate() {
        let out = enc.encode(serving, ctx, 0, i as i64, 0, Some(r));
        bytes += out.value.map_or(0, <[u8]>::len);
        if let (Some(t), Some(label)) = (tally.as_mut(), out.label) {
            let p = f64::from(out.positive_probability);
            let at = 1_795_000_000_000 + i as i64;
            // Offsets grow from batch to batch so every record counts, as in a stream.
            t.count(
                0,
                *round + i as i64,
                at,
                out.subjects,
                label == Label::Positive,
                p,
            );
        }
    }
    *round += BATCH as i64;
    if let (Some(o), Some(t)) = (opinion, tally) {
        let samples = std::mem::take(&mut enc.samples.taken).map(|_| None);
        o.record_batch(&t, samples, &serving.version, 1_795_000_000_000);
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let batch = records();
    let serving = ServingModel {
        model: Model::load(std::path::Path::new("models/sentiment-en.model"))
            .expect("models/sentiment-en.model loads"),
        context_id: "sentiment-en".into(),
        version: "bench".into(),
    };
    let none = Opinion::new(&SubjectsConfig::new(), &SummaryConfig::default()).unwrap();
    let five = Opinion::new(&subjects(), &SummaryConfig::default()).unwrap();
    let mut g = c.benchmark_group("encode_512");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut enc = Encoder::default();
    let mut round = 0i64;
    let plain = context(None);
    g.bench_function("no subjects", |b| {
        b.iter(|| {
            black_box(encode_batch(
                &serving, &plain, &mut enc, &batch, None, &mut round,
            ))
        })
    });
    let ctx = context(Some(&five));
    g.bench_function("5 subjects", |b| {
        b.iter(|| {
            black_box(encode_batch(
                &serving, &ctx, &mut enc, &batch, None, &mut round,
            ))
        })
    });
    g.bench_function("5 subjects + windows", |b| {
        b.iter(|| {
            black_box(encode_batch(
                &serving,
                &ctx,
                &mut enc,
                &batch,
                Some(&five),
                &mut round,
            ))
        })
    });
    g.bench_function("no subjects + windows", |b| {
        b.iter(|| {
            black_box(encode_batch(
                &serving,
                &plain,
                &mut enc,
                &batch,
                Some(&none),
                &mut round,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
