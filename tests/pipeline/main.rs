//! The data plane against a real Kafka-protocol broker (tansu): delivery, dead letters, crashes,
//! graceful stops and scale-out. One broker per test, on a free port.

mod faults;
mod harness;
mod tls;
mod topics;
mod txnlog;

use harness::{rt, tweets, wait_until, Broker, Daemon, DaemonArgs, Record};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

pub(crate) const PARTITIONS: i32 = 4;
pub(crate) const N: usize = 20_000;

/// A broker with `in`, `out` and `out.dlq` topics of 4 partitions.
pub(crate) fn setup() -> (Broker, tokio::runtime::Runtime) {
    let broker = Broker::start();
    let rt = rt();
    rt.block_on(async {
        for t in ["in", "out", "out.dlq"] {
            broker.create_topic(t, PARTITIONS).await;
        }
    });
    (broker, rt)
}

pub(crate) fn args<'a>(
    broker: &'a Broker,
    name: &'a str,
    dir: &'a std::path::Path,
) -> DaemonArgs<'a> {
    DaemonArgs {
        brokers: &broker.addr,
        input: "in",
        output: "out",
        name,
        group: "streamscore-test",
        workers: 2,
        log_dir: dir,
        extra: &[],
    }
}

/// Input offsets of every good record, by reading the input topic back.
pub(crate) fn input_offsets(broker: &Broker, expect: usize) -> HashMap<(i32, i64), Record> {
    broker
        .read_all(
            "in",
            PARTITIONS,
            expect,
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .into_iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect()
}

/// Outputs keyed by their source `(partition, offset)`, with how many times each appeared.
pub(crate) fn outputs_by_source(records: &[Record]) -> BTreeMap<(i32, i64), usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(r.source()).or_insert(0) += 1;
    }
    m
}

/// The output topic read until quiet, measured against the inputs.
pub(crate) struct Coverage {
    pub(crate) outputs: Vec<Record>,
    pub(crate) missing: usize,
    pub(crate) duplicates: usize,
}

pub(crate) fn coverage(
    broker: &Broker,
    inputs: &HashMap<(i32, i64), Record>,
    settle: Duration,
) -> Coverage {
    let outputs = broker.read_all("out", PARTITIONS, N, settle, Duration::from_secs(30));
    let by_source = outputs_by_source(&outputs);
    Coverage {
        missing: inputs.keys().filter(|k| !by_source.contains_key(k)).count(),
        duplicates: by_source.values().map(|n| n - 1).sum(),
        outputs,
    }
}

pub(crate) fn wait_for_outputs(broker: &Broker, at_least: usize, daemon: &Daemon) {
    let start = std::time::Instant::now();
    loop {
        let seen = broker
            .read_all(
                "out",
                PARTITIONS,
                at_least,
                Duration::ZERO,
                Duration::from_secs(5),
            )
            .len();
        if seen >= at_least {
            return;
        }
        let log = daemon.log_text();
        assert!(
            !log.contains("panicked") && start.elapsed() < Duration::from_secs(120),
            "{seen} of {at_least} outputs; daemon log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_good_record_scored_once_and_poison_dead_lettered() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let good = tweets(N);
    // Six kinds of poison, ten of each, spread over the partitions by key.
    let big = format!("{{\"text\": \"{}\"}}", "a".repeat(600 * 1024)).into_bytes();
    let kinds: [(&str, Vec<u8>); 6] = [
        ("not_utf8", vec![0xff, 0xfe, 0x00, 0x9f]),
        ("invalid_json", b"{\"text\": ".to_vec()),
        ("invalid_json", b"[\"an array\"]".to_vec()),
        ("missing_text", b"{\"body\": \"no text field\"}".to_vec()),
        ("empty_text", b"{\"text\": \"   \"}".to_vec()),
        ("too_large", big),
    ];
    let mut poison = Vec::new();
    for (k, (reason, bytes)) in kinds.iter().enumerate() {
        for i in 0..10 {
            poison.push((format!("poison-{k}-{i}"), bytes.clone(), *reason));
        }
    }
    rt.block_on(async {
        broker.produce("in", &good[..N / 2]).await;
        let p: Vec<(String, Vec<u8>)> = poison
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        broker.produce("in", &p).await;
        broker.produce("in", &good[N / 2..]).await;
    });
    let inputs = input_offsets(&broker, N + poison.len());
    assert_eq!(inputs.len(), N + poison.len());

    // Three encoding threads a worker: batches are encoded out of order and must still be
    // produced in consumption order (checked below), dead letters included.
    let pooled = DaemonArgs {
        extra: &["--scoring-threads", "3"],
        ..args(&broker, "a", dir.path())
    };
    let mut daemon = Daemon::start(&pooled);
    wait_for_outputs(&broker, N, &daemon);
    let out = broker.read_all(
        "out",
        PARTITIONS,
        N,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let dlq = broker.read_all(
        "out.dlq",
        PARTITIONS,
        poison.len(),
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    daemon.signal("-TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        daemon.log_text()
    );

    // Exactly one output per good input offset, keys kept.
    let by_source = outputs_by_source(&out);
    assert_eq!(out.len(), N, "one output per good input");
    assert!(by_source.values().all(|&n| n == 1), "no duplicates");
    for r in &out {
        let input = &inputs[&r.source()];
        assert_eq!(r.key, input.key, "key kept");
        assert!(
            r.timestamp_ms >= input.timestamp_ms,
            "output made after its input"
        );
        let v = r.json();
        let id = String::from_utf8(input.key.clone().unwrap()).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert!(matches!(
            v["prediction"].as_str(),
            Some("POSITIVE" | "NEGATIVE")
        ));
        assert_eq!(
            r.headers["streamscore.model.version"],
            v["model"]["version"].as_str().unwrap()
        );
    }
    // The workers start reading together: nothing is produced before the later of the two
    // has had its first assignment (else the first would drain the backlog alone, then be
    // revoked when its sibling's join completes).
    let log = daemon.log_text();
    let joined = first_assignments(&log);
    assert_eq!(joined.len(), 2, "both workers assigned:\n{log}");
    let formed = joined.values().max().copied().unwrap();
    let first_output = out.iter().filter_map(|r| r.timestamp_ms).min().unwrap();
    assert!(
        first_output >= formed - 5,
        "an output at {first_output} before the group formed at {formed}:\n{log}"
    );
    // Per source partition, outputs appear in input order within each output partition.
    let mut last: HashMap<(i32, i32), i64> = HashMap::new();
    let mut sorted = out.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let (sp, so) = r.source();
        let prev = last.insert((r.partition, sp), so);
        assert!(
            prev.is_none_or(|p| p < so),
            "order broken in output partition {} for source partition {sp}",
            r.partition
        );
    }
    // Every poison record in the dead-letter topic with its reason and original bytes.
    assert_eq!(dlq.len(), poison.len());
    let expected: HashMap<String, (&Vec<u8>, &str)> = poison
        .iter()
        .map(|(k, v, r)| (k.clone(), (v, *r)))
        .collect();
    for r in &dlq {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let (bytes, reason) = expected[&key];
        assert_eq!(&r.value, bytes, "original bytes kept for {key}");
        assert_eq!(
            r.headers["streamscore.error.reason"], reason,
            "reason for {key}"
        );
        assert_eq!(r.headers["streamscore.source.topic"], "in");
        assert!(inputs.contains_key(&r.source()));
    }
}

/// When each worker was first assigned partitions, in ms since the epoch, from the log.
fn first_assignments(log: &str) -> HashMap<String, i64> {
    let mut first = HashMap::new();
    for (worker, at) in harness::assignments(log) {
        first.entry(worker).or_insert(at);
    }
    first
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(broker.produce("in", &tweets(N)));
    let inputs = input_offsets(&broker, N);

    // The documented bound on what a crash replays: per worker, the records delivered since
    // the last commit (at most `commit.max_records`) plus those in flight.
    let bounded = DaemonArgs {
        extra: &[
            "--commit-max-records",
            "500",
            "--max-in-flight",
            "1000",
            // The scoring thread encodes too (the other tests run the default pool).
            "--scoring-threads",
            "1",
        ],
        ..args(&broker, "a", dir.path())
    };
    let bound = 2 * (500 + 1000);
    let mut first = Daemon::start(&bounded);
    wait_for_outputs(&broker, N / 10, &first);
    first.signal("-KILL");
    assert_eq!(
        first.wait(Duration::from_secs(10)),
        None,
        "killed by a signal"
    );

    let mut second = Daemon::start(&bounded);
    wait_until(
        Duration::from_secs(120),
        || {
            format!(
                "first:\n{}\nsecond:\n{}",
                first.log_text(),
                second.log_text()
            )
        },
        || coverage(&broker, &inputs, Duration::from_millis(700)).missing == 0,
    );
    second.signal("-TERM");
    assert_eq!(second.wait(Duration::from_secs(30)), Some(0));
    let c = coverage(&broker, &inputs, Duration::from_secs(1));
    eprintln!(
        "kill -9: {} outputs for {N} inputs, {} duplicates, {} missing",
        c.outputs.len(),
        c.duplicates,
        c.missing
    );
    assert_eq!(c.missing, 0);
    assert!(
        c.duplicates <= bound,
        "{} duplicates, over the bound of {bound}",
        c.duplicates
    );
}

#[test]
fn sigterm_mid_stream_then_restart_is_exactly_once() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(broker.produce("in", &tweets(N)));
    let inputs = input_offsets(&broker, N);

    // One worker first: tansu 0.6.0 keeps a group's leader id when the leader leaves a
    // group that is re-forming (`Inner<_, Forming>::leave` never clears `state.leader`), so
    // when two members leave cleanly, the non-leader first, the next members are told to wait
    // for a leader that is gone; nobody sends the assignment and the group stalls until a
    // storage conflict happens to reload it (seen: 60 s to never). A lone member leaves a
    // formed group, whose leave does clear it. The restart still runs two workers.
    let one = DaemonArgs {
        workers: 1,
        ..args(&broker, "a", dir.path())
    };
    let mut first = Daemon::start(&one);
    wait_for_outputs(&broker, N / 10, &first);
    first.signal("-TERM");
    assert_eq!(
        first.wait(Duration::from_secs(30)),
        Some(0),
        "clean exit within 30 s:\n{}",
        first.log_text()
    );
    assert!(
        first.log_text().contains("offsets committed"),
        "{}",
        first.log_text()
    );

    let mut second = Daemon::start(&args(&broker, "a", dir.path()));
    // Wait for the assignment (tansu holds a new generation's join for seconds), then for
    // the outputs.
    wait_until(
        Duration::from_secs(120),
        || second.log_text(),
        || second.log_text().contains("partitions assigned"),
    );
    wait_for_outputs(&broker, N, &second);
    second.signal("-TERM");
    assert_eq!(second.wait(Duration::from_secs(30)), Some(0));
    let c = coverage(&broker, &inputs, Duration::from_secs(2));
    assert_eq!(
        (c.missing, c.duplicates),
        (0, 0),
        "{} outputs",
        c.outputs.len()
    );
}

#[test]
fn two_instances_share_partitions_and_one_takes_over() {
    let (broker, rt) = setup();
    let dir = tempfile::tempdir().unwrap();
    let all = tweets(N);
    rt.block_on(broker.produce("in", &all[..N / 2]));

    let a_args = DaemonArgs {
        workers: 1,
        ..args(&broker, "a", dir.path())
    };
    let b_args = DaemonArgs {
        workers: 1,
        ..args(&broker, "b", dir.path())
    };
    let mut a = Daemon::start(&a_args);
    let mut b = Daemon::start(&b_args);
    wait_for_outputs(&broker, N / 2, &a);
    // Both instances own partitions: each scored some records.
    let out = broker.read_all(
        "out",
        PARTITIONS,
        N / 2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let by_instance: HashSet<String> = out
        .iter()
        .map(|r| r.json()["deployment"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        by_instance,
        HashSet::from(["a".to_string(), "b".to_string()]),
        "a:\n{}\nb:\n{}",
        a.log_text(),
        b.log_text()
    );

    // Stop one; the other takes over the rest of the stream.
    a.signal("-TERM");
    assert_eq!(a.wait(Duration::from_secs(30)), Some(0));
    rt.block_on(broker.produce("in", &all[N / 2..]));
    let inputs = input_offsets(&broker, N);
    wait_until(
        Duration::from_secs(120),
        || b.log_text(),
        || coverage(&broker, &inputs, Duration::from_millis(700)).missing == 0,
    );
    b.signal("-TERM");
    assert_eq!(b.wait(Duration::from_secs(30)), Some(0));
    let c = coverage(&broker, &inputs, Duration::from_secs(1));
    assert_eq!(c.missing, 0);
    let b_partitions: HashSet<i32> = c
        .outputs
        .iter()
        .filter(|r| r.json()["deployment"] == "b")
        .map(|r| r.source().0)
        .collect();
    assert_eq!(
        b_partitions.len(),
        PARTITIONS as usize,
        "b took over every partition"
    );
}
