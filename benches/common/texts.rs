//! The bench texts: the dev set named by `STREAMSCORE_BENCH_DATA` (default
//! `../shared/data/tweeteval_sentiment_val_binary.jsonl`), else the repository's samples.

use std::path::PathBuf;
use streamscore::dataset::Dataset;

/// Tweet texts for the benches.
pub fn texts() -> Vec<String> {
    let candidates = [
        std::env::var("STREAMSCORE_BENCH_DATA")
            .map(PathBuf::from)
            .ok(),
        Some(PathBuf::from(
            "../shared/data/tweeteval_sentiment_val_binary.jsonl",
        )),
        Some(PathBuf::from("samples/tweets.jsonl")),
    ];
    for p in candidates.into_iter().flatten() {
        if let Ok(d) = Dataset::read(&p) {
            eprintln!("bench texts: {} ({} tweets)", p.display(), d.examples.len());
            return d.examples.into_iter().map(|e| e.text).collect();
        }
    }
    panic!("no bench data: set STREAMSCORE_BENCH_DATA to a labeled JSON-lines file");
}
