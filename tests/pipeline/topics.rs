//! `streamscore topics` against a real broker, as a user runs it: records read at once (no
//! group join), dead-letter reasons visible with `--headers`, a missing topic named.

use super::*;
use std::process::Command;

fn topics(
    broker: &Broker,
    args: &[&str],
    stdin_file: Option<&std::path::Path>,
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamscore"));
    cmd.arg("topics")
        .args(args)
        .args(["--brokers", &broker.addr]);
    if let Some(f) = stdin_file {
        cmd.arg(f);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn topics_produce_read_and_name_what_is_missing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = topics(
        &broker,
        &["create", "--partitions", "3", "t", "t.dlq"],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("created t"), "{out}");

    // Produce a file (JSON ids become keys) at a bounded rate.
    let file = dir.path().join("lines.jsonl");
    let lines: Vec<String> = (0..30)
        .map(|i| format!("{{\"id\": \"k{i}\", \"text\": \"tweet {i}\"}}"))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let start = std::time::Instant::now();
    let (ok, _, err) = topics(&broker, &["produce", "t", "--rate", "100"], Some(&file));
    assert!(ok, "{err}");
    assert!(err.contains("produced 30 records"), "{err}");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "--rate paces"
    );

    // Read back at once: no group join to wait for.
    let start = std::time::Instant::now();
    let (ok, out, err) = topics(&broker, &["read", "t", "--max", "30"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 30, "{out}{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want);

    // --headers: partition, offset, key, headers and value as JSON.
    let (ok, out, _) = topics(&broker, &["read", "t", "--max", "1", "--headers"], None);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(v["key"].as_str().unwrap().starts_with('k'), "{v}");
    assert!(v["partition"].is_number() && v["offset"].is_number() && v["headers"].is_object());

    // A dead letter's reason is visible: a daemon dead-letters a record without text.
    let rt = rt();
    rt.block_on(broker.create_topic("in", 1));
    rt.block_on(broker.create_topic("out", 1));
    rt.block_on(broker.create_topic("out.dlq", 1));
    rt.block_on(broker.produce("in", &[("bad".to_string(), b"{\"no_text\": 1}".to_vec())]));
    let d = Daemon::start(&DaemonArgs {
        workers: 1,
        ..args(&broker, "t", dir.path())
    });
    let mut dead = String::new();
    wait_until(
        Duration::from_secs(120),
        || d.log_text(),
        || {
            dead = topics(
                &broker,
                &["read", "out.dlq", "--headers", "--idle-ms", "500"],
                None,
            )
            .1;
            !dead.is_empty()
        },
    );
    let v: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(
        v["headers"]["streamscore.error.reason"], "missing_text",
        "{v}"
    );
    drop(d);

    // A missing topic is named, for produce and read alike.
    for args in [vec!["produce", "nope"], vec!["read", "nope"]] {
        let f = args[0] == "produce";
        let (ok, _, err) = topics(&broker, &args, f.then_some(file.as_path()));
        assert!(!ok, "{args:?}");
        assert!(err.contains("\"nope\" does not exist"), "{args:?}: {err}");
    }
}
