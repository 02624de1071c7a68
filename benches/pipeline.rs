//! End-to-end pipeline bench on a real broker (tansu, started here on a free port):
//!
//! 1. throughput: records/s through `streamscore run` (shipped model, 2 workers) versus a bare
//!    consume→produce copy with the same client settings, same broker, same run;
//! 2. latency: p50/p99 from an input record's timestamp to its output's timestamp while input
//!    arrives at half the measured pipeline rate.
//!
//! Rates are taken from the output records' create timestamps (first to last), so group-join
//! time is excluded for both. Run: `cargo bench --bench pipeline` (env `PIPELINE_BENCH_RECORDS`,
//! default 200000). Under `cargo test` it runs a small smoke pass.

#[path = "../tests/pipeline/harness.rs"]
#[allow(dead_code)]
mod harness;

use futures::StreamExt;
use harness::{tweets, Broker, Daemon, DaemonArgs, Record};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = if bench {
        std::env::var("PIPELINE_BENCH_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000)
    } else {
        2_000
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = Broker::start();
    rt.block_on(async {
        for t in [
            "in",
            "bare-out",
            "out",
            "out.dlq",
            "lat-in",
            "lat-out",
            "lat-out.dlq",
        ] {
            broker.create_topic(t, PARTITIONS).await;
        }
    });
    let data = tweets(n);
    rt.block_on(broker.produce("in", &data));
    eprintln!("produced {n} tweets to 4 partitions");

    let bare = rt.block_on(bare_copy(&broker.addr, n));
    let bare_rate = rate(&broker.read_all(
        "bare-out",
        PARTITIONS,
        n,
        Duration::from_secs(1),
        Duration::from_secs(120),
    ));

    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&DaemonArgs {
        brokers: &broker.addr,
        input: "in",
        output: "out",
        name: "bench",
        group: "bench",
        workers: 2,
        log_dir: dir.path(),
    });
    let out = broker.read_all(
        "out",
        PARTITIONS,
        n,
        Duration::from_secs(2),
        Duration::from_secs(300),
    );
    daemon.signal("-TERM");
    daemon.wait(Duration::from_secs(30));
    let pipe_rate = rate(&out);
    println!("bare copy : {bare} records copied, {bare_rate:.0} records/s");
    println!(
        "pipeline  : {} records scored, {pipe_rate:.0} records/s",
        out.len()
    );
    println!("ratio     : {:.2}x the bare copy", pipe_rate / bare_rate);

    if bench {
        latency(&rt, &broker, dir.path(), pipe_rate / 2.0);
    }
}

/// Records/s between the first and last output create timestamps.
fn rate(records: &[Record]) -> f64 {
    let ts: Vec<i64> = records.iter().filter_map(|r| r.timestamp_ms).collect();
    let (Some(min), Some(max)) = (ts.iter().min(), ts.iter().max()) else {
        return 0.0;
    };
    records.len() as f64 / ((max - min).max(1) as f64 / 1000.0)
}

/// A hand-written consume→produce copy loop with the daemon's client settings.
async fn bare_copy(brokers: &str, n: usize) -> usize {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bare")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    consumer.subscribe(&["in"]).unwrap();
    let mut inflight = futures::stream::FuturesUnordered::new();
    let mut copied = 0;
    let mut received = 0;
    while copied < n {
        tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                let (p, o, res): (i32, i64, Result<_, _>) = r;
                res.expect("bare delivery");
                let _ = consumer.store_offset("in", p, o);
                copied += 1;
            }
            m = consumer.recv(), if received < n && inflight.len() < 2048 => {
                let m = m.unwrap();
                received += 1;
                let (p, o) = (m.partition(), m.offset());
                let key = m.key().map(<[u8]>::to_vec);
                let value = m.payload().unwrap_or_default().to_vec();
                let producer = producer.clone();
                inflight.push(async move {
                    let mut rec = FutureRecord::to("bare-out").payload(&value);
                    if let Some(k) = &key { rec = rec.key(k); }
                    (p, o, producer.send(rec, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e))
                });
            }
        }
    }
    copied
}

/// p50/p99 input→output latency at `rate` records/s for about 10 s.
fn latency(rt: &tokio::runtime::Runtime, broker: &Broker, dir: &std::path::Path, rate: f64) {
    let mut daemon = Daemon::start(&DaemonArgs {
        brokers: &broker.addr,
        input: "lat-in",
        output: "lat-out",
        name: "lat",
        group: "lat",
        workers: 2,
        log_dir: dir,
    });
    let start = Instant::now();
    while daemon.log_text().matches("partitions assigned").count() < 2
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let total = (rate * 10.0) as usize;
    let data = tweets(total);
    rt.block_on(async {
        let p = broker.producer();
        let tick = Duration::from_millis(10);
        let per_tick = ((rate / 100.0).ceil() as usize).max(1);
        let t0 = Instant::now();
        for (i, chunk) in data.chunks(per_tick).enumerate() {
            for (k, v) in chunk {
                // Delivery is checked by reading the topic back; the future can be dropped.
                let _ = p.send_result(FutureRecord::to("lat-in").key(k).payload(v));
            }
            let due = t0 + tick * (i as u32 + 1);
            tokio::time::sleep_until(due.into()).await;
        }
        use rdkafka::producer::Producer;
        let _ = p.flush(Duration::from_secs(30));
    });
    let inputs: HashMap<(i32, i64), i64> = broker
        .read_all(
            "lat-in",
            PARTITIONS,
            total,
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .into_iter()
        .filter_map(|r| Some(((r.partition, r.offset), r.timestamp_ms?)))
        .collect();
    let out = broker.read_all(
        "lat-out",
        PARTITIONS,
        total,
        Duration::from_secs(2),
        Duration::from_secs(120),
    );
    daemon.signal("-TERM");
    daemon.wait(Duration::from_secs(30));
    let mut lat: Vec<i64> = out
        .iter()
        .filter_map(|r| Some(r.timestamp_ms? - inputs.get(&r.source())?))
        .collect();
    lat.sort_unstable();
    if lat.is_empty() {
        println!("latency   : no samples");
        return;
    }
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "latency   : {} records at {rate:.0}/s: p50 {} ms, p99 {} ms, max {} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
}
