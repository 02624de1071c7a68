//! Faults of the data plane: exactly-once through crashes, dead letters too large for the
//! producer, a missing dead-letter topic, and an output broker frozen past the producer's
//! message timeout, and the broker itself killed and restarted (durable storage).

use crate::harness::{self, tweets, wait_until, Broker, Daemon, DaemonArgs, S3Server};
use crate::{
    args, coverage, input_offsets, outputs_by_source, setup, txnlog, wait_for_outputs, N,
    PARTITIONS,
};
use rdkafka::producer::{FutureRecord, Producer};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// `streamscore ctl status NAME` against the daemon started in `dir` under that name.
pub(crate) fn ctl_status(dir: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["ctl", "--socket"])
        .arg(dir.join(format!("{name}.sock")))
        .args(["status", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exactly_once_through_three_kill_9s() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(broker.produce("in", &tweets(N)));
    let inputs = input_offsets(&broker, N);
    let eos = DaemonArgs {
        extra: &["--delivery", "exactly-once"],
        ..args(&broker, "a", dir.path())
    };
    for round in 1..=3 {
        let mut d = Daemon::start(&eos);
        wait_for_outputs(&broker, round * N / 5, &d);
        d.signal("-KILL");
        assert_eq!(d.wait(Duration::from_secs(10)), None, "killed by a signal");
    }
    // Read as read_committed defines it, from the transaction markers: tansu's fetch never
    // lists aborted transactions, so librdkafka's own read_committed would show the records
    // of the transactions each kill left open (see txnlog.rs). The wait must use the same
    // view: librdkafka's can already cover every input with aborted records alone, before the
    // last daemon has joined its group.
    let missing_committed = || {
        let log = txnlog::read_committed(&broker.addr, "out", PARTITIONS);
        let by_source = outputs_by_source(&log.committed);
        let missing = inputs.keys().filter(|k| !by_source.contains_key(k)).count();
        (log, by_source, missing)
    };
    let mut last = Daemon::start(&eos);
    wait_until(
        Duration::from_secs(180),
        || last.log_text(),
        || missing_committed().2 == 0,
    );
    last.signal("-TERM");
    assert_eq!(last.wait(Duration::from_secs(30)), Some(0));
    let (log, by_source, missing) = missing_committed();
    let committed = &log.committed;
    let duplicates: usize = by_source.values().map(|n| n - 1).sum();
    let shown = coverage(&broker, &inputs, Duration::from_secs(1))
        .outputs
        .len();
    eprintln!(
        "{} committed outputs, {} aborted, {} open; librdkafka's read_committed shows {shown}",
        committed.len(),
        log.aborted,
        log.open
    );
    assert_eq!(log.open, 0, "every transaction ended");
    assert_eq!(
        committed.len() + log.aborted,
        shown,
        "the marker reader read what librdkafka shows, and no transaction is left open"
    );
    assert_eq!(
        (missing, duplicates),
        (0, 0),
        "{} committed outputs; log:\n{}",
        committed.len(),
        last.log_text()
    );
}

#[test]
fn dead_letters_too_large_for_the_producer_are_cut_to_fit() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let good = tweets(N / 10);
    // Not JSON, 200 KB: a dead letter over the 64 KB producer limit set below.
    let not_json = vec![b'x'; 200 * 1024];
    // Over the input limit (512 KB): dead-lettered as too_large, and cut too.
    let too_large = format!("{{\"text\": \"{}\"}}", "a".repeat(600 * 1024)).into_bytes();
    let mut records = good.clone();
    for i in 0..3 {
        records.insert(i * 100, (format!("bad{i}"), not_json.clone()));
        records.insert(i * 100 + 50, (format!("big{i}"), too_large.clone()));
    }
    rt.block_on(broker.produce("in", &records));
    let mut d = Daemon::start(&DaemonArgs {
        extra: &["--max-message-bytes", "65536"],
        ..args(&broker, "a", dir.path())
    });
    wait_for_outputs(&broker, good.len(), &d);
    let dlq = broker.read_all(
        "out.dlq",
        PARTITIONS,
        6,
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
    assert_eq!(dlq.len(), 6, "log:\n{}", d.log_text());
    for r in &dlq {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let original = if key.starts_with("bad") {
            &not_json
        } else {
            &too_large
        };
        let reason = &r.headers["streamscore.error.reason"];
        assert_eq!(
            reason,
            if key.starts_with("bad") {
                "invalid_json"
            } else {
                "too_large"
            }
        );
        assert!(
            r.value.len() <= 65536 - 4096,
            "cut to fit: {}",
            r.value.len()
        );
        assert_eq!(
            r.value[..],
            original[..r.value.len()],
            "a prefix of the original"
        );
        assert_eq!(
            r.headers["streamscore.original.size"],
            original.len().to_string()
        );
        let digest: String = Sha256::digest(original)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(r.headers["streamscore.original.sha256"], digest);
    }
}

#[test]
fn a_missing_dead_letter_topic_fails_the_deployment_and_names_it() {
    let (broker, _rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&DaemonArgs {
        extra: &["--dlq-topic", "nowhere.dlq"],
        ..args(&broker, "a", dir.path())
    });
    let status = || ctl_status(dir.path(), "a");
    wait_until(
        Duration::from_secs(60),
        || format!("status: {}\nlog:\n{}", status(), d.log_text()),
        || {
            let s = status();
            s.contains("FAILED") && s.contains("nowhere.dlq") && s.contains("does not exist")
        },
    );
}

#[test]
fn a_frozen_output_broker_past_the_message_timeout_loses_nothing_and_keeps_the_group() {
    let (input, rt) = setup();
    let output = Broker::start();
    rt.block_on(async {
        for t in ["out", "out.dlq"] {
            output.create_topic(t, PARTITIONS).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let all = tweets(N);
    rt.block_on(input.produce("in", &all[..N / 2]));
    let mut d = Daemon::start(&DaemonArgs {
        extra: &[
            "--output-brokers",
            &output.addr,
            "--kafka",
            "message.timeout.ms=4000",
            "--kafka",
            "max.poll.interval.ms=7000",
            "--stall-timeout-ms",
            "3000",
        ],
        ..args(&input, "a", dir.path())
    });
    wait_for_outputs(&output, N / 10, &d);

    // Frozen for longer than the message timeout and the poll interval, while input arrives.
    output.signal("-STOP");
    rt.block_on(input.produce("in", &all[N / 2..]));
    std::thread::sleep(Duration::from_secs(8));
    // Stuck is never RUNNING: the status says STALLED, with the last delivery error.
    let stalled = ctl_status(dir.path(), "a");
    std::thread::sleep(Duration::from_secs(4));
    output.signal("-CONT");
    assert!(
        stalled.contains("STALLED"),
        "status during the outage: {stalled}"
    );

    let inputs = input_offsets(&input, N);
    wait_until(
        Duration::from_secs(150),
        || d.log_text(),
        || coverage(&output, &inputs, Duration::from_millis(700)).missing == 0,
    );
    let log = d.log_text();
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
    let c = coverage(&output, &inputs, Duration::from_secs(1));
    assert_eq!(c.missing, 0);
    assert!(
        log.contains("rewinding"),
        "the outage was noticed and answered by a rewind:\n{log}"
    );
    assert!(
        !log.contains("partitions revoked") && !log.contains("partitions lost"),
        "the consumers kept their partitions through the outage:\n{log}"
    );
    eprintln!(
        "frozen output: {} outputs for {N} inputs, {} duplicates",
        c.outputs.len(),
        c.duplicates
    );
}

/// A second instance joins while input flows; the first hands its revoked partitions over
/// after delivering and committing what it had in flight.
fn join_under_load(strategy: &str) {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let p = broker.producer();
    let data = tweets(N);
    // About 4,000 records a second for 5 s.
    let feeder = rt.spawn(async move {
        for chunk in data.chunks(400) {
            for (k, v) in chunk {
                let _ = p.send_result(FutureRecord::to("in").key(k).payload(v));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = p.flush(Duration::from_secs(30));
    });
    let kafka = format!("partition.assignment.strategy={strategy}");
    let extra = [
        "--commit-max-records",
        "500",
        "--max-in-flight",
        "1000",
        "--kafka",
        &kafka,
    ];
    let bound = 2 * (500 + 1000);
    let mut a = Daemon::start(&DaemonArgs {
        workers: 1,
        extra: &extra,
        ..args(&broker, "a", dir.path())
    });
    wait_for_outputs(&broker, N / 10, &a);
    let mut b = Daemon::start(&DaemonArgs {
        workers: 1,
        extra: &extra,
        ..args(&broker, "b", dir.path())
    });
    wait_until(
        Duration::from_secs(150),
        || format!("a:\n{}\nb:\n{}", a.log_text(), b.log_text()),
        || b.log_text().contains("partitions assigned"),
    );
    rt.block_on(feeder).unwrap();
    let inputs = input_offsets(&broker, N);
    wait_until(
        Duration::from_secs(150),
        || format!("a:\n{}\nb:\n{}", a.log_text(), b.log_text()),
        || coverage(&broker, &inputs, Duration::from_millis(700)).missing == 0,
    );
    for d in [&mut a, &mut b] {
        d.signal("-TERM");
        assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
    }
    let c = coverage(&broker, &inputs, Duration::from_secs(1));
    eprintln!(
        "{strategy}: {} outputs for {N} inputs, {} duplicates",
        c.outputs.len(),
        c.duplicates
    );
    assert_eq!(c.missing, 0);
    assert!(c.duplicates <= bound, "{} duplicates", c.duplicates);
    assert!(
        a.log_text().contains("partitions revoked"),
        "a handed partitions over:\n{}",
        a.log_text()
    );
}

#[test]
fn a_second_instance_joining_under_load_loses_nothing() {
    join_under_load("range,roundrobin");
}

#[test]
fn cooperative_sticky_rebalances_lose_nothing() {
    join_under_load("cooperative-sticky");
}

#[test]
fn broker_kill_9_and_restart_under_load_loses_nothing() {
    // tansu on S3 storage (a local moto server): its records survive kill -9.
    let s3 = S3Server::start();
    let mut broker = Broker::start_durable(&s3);
    let rt = harness::rt();
    let n = N / 4;
    let all = tweets(n);
    rt.block_on(async {
        for t in ["in", "out", "out.dlq"] {
            broker.create_topic(t, PARTITIONS).await;
        }
        broker.produce("in", &all[..n / 2]).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let bounded = DaemonArgs {
        extra: &["--commit-max-records", "500", "--max-in-flight", "1000"],
        ..args(&broker, "a", dir.path())
    };
    let mut d = Daemon::start(&bounded);
    wait_for_outputs(&broker, n / 10, &d);

    // The second half arrives while the broker is killed and restarted: the test's producer
    // and the daemon both ride through it.
    let producer = broker.producer();
    let rest = all[n / 2..].to_vec();
    let feed = rt.spawn(async move {
        for chunk in rest.chunks(100) {
            let sends = chunk.iter().map(|(k, v)| {
                producer.send(
                    FutureRecord::to("in").key(k).payload(v),
                    Duration::from_secs(120),
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).expect("input produced");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    broker.kill_and_restart(&s3);
    rt.block_on(feed).unwrap();
    let inputs = input_offsets(&broker, n);
    // Reads through the restarted broker go to its S3 store (a Python server here) and can
    // pause for a second or more: a short idle cut-off would count unread outputs as missing.
    let settle = Duration::from_secs(3);
    wait_until(
        Duration::from_secs(240),
        || {
            let c = coverage(&broker, &inputs, settle);
            format!(
                "{} outputs read, {} inputs missing, {} duplicates; daemon log:\n{}",
                c.outputs.len(),
                c.missing,
                c.duplicates,
                d.log_text()
            )
        },
        || coverage(&broker, &inputs, settle).missing == 0,
    );
    let log = d.log_text();
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0), "{log}");
    let c = coverage(&broker, &inputs, settle);
    let bound = 2 * (500 + 1000);
    eprintln!(
        "broker kill -9: {} outputs for {n} inputs, {} duplicates, {} missing",
        c.outputs.len(),
        c.duplicates,
        c.missing
    );
    assert_eq!(c.missing, 0);
    assert!(
        c.duplicates <= bound,
        "{} duplicates, over {bound}",
        c.duplicates
    );
}
