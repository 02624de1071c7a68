#!/usr/bin/env bash
# Rebuilds the shipped model models/sentiment-en.model from the labeled tweet files.
# Usage: scripts/train-model.sh [DATA_DIR] (default: ../shared/data)
# Hand-labeled SemEval/STS-Gold/Sanders tweets weigh 2, the emoticon-labeled Sentiment140
# subset 0.5: its labels are noisier and its tweets further from today's streams.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
cargo run --release --quiet -- train \
  --train "$data/sentiment140_train_100k_subset.jsonl@0.5" \
          "$data/semeval2016_task4A_test_binary.jsonl@2" \
          "$data/semeval2013_2016_train_binary.jsonl@2" \
          "$data/sts_gold_binary.jsonl@2" \
          "$data/sanders_binary.jsonl@2" \
  --dev "$data/tweeteval_sentiment_val_binary.jsonl" \
  --seed 42 \
  --out models/sentiment-en.model
