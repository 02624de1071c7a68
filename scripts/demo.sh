#!/usr/bin/env bash
# Local demo: build streamscore and label the sample tweets with the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
echo "== scoring samples/tweets.jsonl with the shipped model"
./target/release/streamscore score samples/tweets.jsonl
echo "== and measuring it on their labels"
./target/release/streamscore eval --data samples/tweets.jsonl
