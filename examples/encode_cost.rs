//! The scorer's own work per record, for instruction counts: `N` JSON tweets (default
//! 20,000) parsed, scored and encoded as a deployment without subjects does, in batches of
//! 512. On a noisy machine, wall time hides changes of a few percent; instruction counts do
//! not. Run it twice under cachegrind and take the difference, so loading the model and the
//! texts cancels out:
//!
//! ```text
//! cargo build --release --example encode_cost
//! for n in 1000 21000; do valgrind --tool=cachegrind --cache-sim=no \
//!     target/release/examples/encode_cost $n 2>&1 | grep 'I *refs'; done
//! ```
//! (instructions per record = difference / 20,000). Texts as for the benches
//! (`STREAMSCORE_BENCH_DATA`, else the dev set, else the repository's samples).

#[path = "../benches/common/context.rs"]
mod context;
#[path = "../benches/common/texts.rs"]
mod texts;

use streamscore::model::Model;
use streamscore::stream::record::Encoder;
use streamscore::stream::ServingModel;

/// The daemon's allocator (also the `malloc` of librdkafka's header lists), so the counts
/// are the daemon's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: usize = 512;
const POOL: usize = 2_000;

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 20_000,
    };
    let texts = texts::texts();
    // A fixed pool, encoded round and round, so building it costs the same for every `N`.
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| {
            serde_json::json!({"id": i.to_string(), "text": texts[i % texts.len()]})
                .to_string()
                .into_bytes()
        })
        .collect();
    let serving = ServingModel {
        model: Model::load(std::path::Path::new("models/sentiment-en.model"))?,
        context_id: "sentiment-en".into(),
        version: "1".into(),
    };
    let ctx = context::json_context(None);
    let mut encoder = Encoder::default();
    let (mut bytes, mut offset) = (0usize, 0i64);
    let started = std::time::Instant::now();
    let mut records = pool.iter().cycle().take(n).peekable();
    while records.peek().is_some() {
        encoder.begin_batch(&serving, &ctx);
        for r in records.by_ref().take(BATCH) {
            let out = encoder.encode(&serving, &ctx, 0, offset, 0, Some(r));
            bytes += out.value.map_or(0, <[u8]>::len);
            offset += 1;
        }
    }
    let each = started.elapsed() / n.max(1) as u32;
    eprintln!("{n} records encoded ({bytes} output bytes), {each:?} a record");
    Ok(())
}
