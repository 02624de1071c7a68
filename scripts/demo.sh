#!/usr/bin/env bash
# Local demo: a Kafka-protocol broker (tansu) on 127.0.0.1:9092, the demo topics, streamscore
# scoring them with the shipped model, the sample tweets fed in, and the labeled output printed.
# Leaves nothing running: the broker and streamscore are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMSCORE_BROKERS=127.0.0.1:${KAFKA_PORT:-9092}
echo "== building streamscore (the first build compiles librdkafka: a few minutes)"
cargo build --release
bin=./target/release/streamscore

started_broker=no
if ! scripts/kafka-local.sh status >/dev/null 2>&1; then
  scripts/kafka-local.sh start
  started_broker=yes
fi
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ "$started_broker" = yes ] && scripts/kafka-local.sh stop || true
}
trap cleanup EXIT

suffix=$(date +%s)
in=demo-tweets-$suffix out=demo-scored-$suffix
$bin topics create --partitions 2 "$in" "$out" "$out.dlq"
$bin topics create --partitions 1 "$out.opinion"

echo "== streamscore run: $in -> $out (log: .local/demo.log)"
mkdir -p .local
$bin run --input-topic "$in" --output-topic "$out" --name demo \
  --listen 127.0.0.1:0 --state-dir .local/demo-state --socket .local/demo.sock \
  --subject 'travel=flight,holiday,landed,queue' --subject 'coffee=coffee,#coffee,@cafe_luna' \
  --summary-topic "$out.opinion" --summary-window-ms 5000 --summary-lateness-ms 1000 \
  --kafka session.timeout.ms=6000 >.local/demo.log 2>&1 &
pid=$!

echo "== feeding samples/tweets.jsonl"
$bin topics produce "$in" samples/tweets.jsonl

echo "== labeled output"
$bin topics read "$out" --max "$(grep -c . samples/tweets.jsonl)" --idle-ms 20000

echo "== opinion windows (5 s windows per subject; \"*\" is every tweet) from $out.opinion"
# Windows close 6 s after the stream goes quiet (window + lateness), then they are written.
$bin topics read "$out.opinion" --idle-ms 12000
echo "== (a running daemon shows these live at http://127.0.0.1:8080/ once you sign in)"
