//! The commands exercised as a user runs them: the real binary, spawned.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamscore"))
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn streamscore");
    // The process may exit (for example on a bad model) before reading its input.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// A labeled fixture with an obvious signal, written by the test.
fn write_fixture(path: &Path, n: usize) {
    let pos = [
        "love this",
        "so happy today",
        "great game",
        "awesome news",
        "best day",
    ];
    let neg = [
        "hate this",
        "so sad today",
        "awful game",
        "terrible news",
        "worst day",
    ];
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..n {
        let (text, label) = if i % 2 == 0 {
            (format!("{} {}", pos[i / 2 % 5], i % 7), "POSITIVE")
        } else {
            (format!("{} {}", neg[i / 2 % 5], i % 7), "NEGATIVE")
        };
        writeln!(f, "{}", serde_json::json!({"text": text, "label": label})).unwrap();
    }
}

#[test]
fn score_streams_json_and_plain_lines_with_errors_per_line() {
    let input = concat!(
        "{\"id\": \"1\", \"text\": \"I love this, best day ever :)\"}\n",
        "this is awful, I hate it\n",
        "{broken json\n",
        "\n",
        "{\"data\": {\"id\": \"42\", \"text\": \"so happy for you!!\"}}\n",
        "{\"text\": \"\"}\n",
    );
    let out = run_with_stdin(&["score"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = lines(&out);
    assert_eq!(
        v.len(),
        5,
        "blank lines produce nothing, every other line one object"
    );
    assert_eq!(v[0]["id"], "1");
    assert_eq!(v[0]["prediction"], "POSITIVE");
    assert!(v[0]["probability"].as_f64().unwrap() >= 0.5);
    assert!(v[0]["model"]["version"].as_str().unwrap().len() == 12);
    assert_eq!(v[1]["prediction"], "NEGATIVE");
    assert!(v[1].get("id").is_none());
    assert_eq!(v[2]["reason"], "invalid_json");
    assert_eq!(v[2]["line"], 3);
    assert_eq!(v[3]["id"], "42");
    assert_eq!(v[4]["reason"], "empty_text");
}

#[test]
fn score_reads_a_file_and_handles_a_closed_pipe_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in.txt");
    std::fs::write(&p, "great\nterrible\n").unwrap();
    let out = bin()
        .args(["score", "--format", "text"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = lines(&out);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["prediction"], "POSITIVE");
    assert_eq!(v[1]["prediction"], "NEGATIVE");
}

#[test]
fn train_then_eval_then_score_with_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let dev = dir.path().join("dev.jsonl");
    let model = dir.path().join("m.model");
    write_fixture(&train, 600);
    write_fixture(&dev, 100);
    let out = bin()
        .args(["train", "--train"])
        .arg(&train)
        .arg("--dev")
        .arg(&dev)
        .arg("--out")
        .arg(&model)
        .args(["--seed", "3", "--bits", "16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dev:") && stdout.contains("accuracy"),
        "{stdout}"
    );

    let out = bin()
        .args(["eval", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&dev)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["accuracy"].as_f64().unwrap() > 0.95, "{v}");
    assert!(v["macro_f1"].as_f64().unwrap() > 0.95, "{v}");
    assert!(v["tweets_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(
        v["confusion"]["counts"][0][0].as_u64().unwrap()
            + v["confusion"]["counts"][1][1].as_u64().unwrap()
            + v["confusion"]["counts"][0][1].as_u64().unwrap()
            + v["confusion"]["counts"][1][0].as_u64().unwrap(),
        100
    );

    let out = bin()
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&dev)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("macro-F1") && text.contains("confusion") && text.contains("tweets/s"),
        "{text}"
    );

    let out = run_with_stdin(
        &["score", "--model", model.to_str().unwrap()],
        "awful news\n",
    );
    assert_eq!(lines(&out)[0]["prediction"], "NEGATIVE");
}

#[test]
fn corrupt_model_is_refused_with_a_named_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/sentiment-en.model"
    ))
    .unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", good[..good.len() / 3].to_vec(), "truncated"),
        (
            "flipped",
            {
                let mut b = good.clone();
                b[good.len() / 2] ^= 1;
                b
            },
            "checksum",
        ),
        (
            "other",
            b"{\"json\": true}".to_vec(),
            "not a streamscore model",
        ),
    ];
    for (name, bytes, expect) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = run_with_stdin(&["score", "--model", p.to_str().unwrap()], "hello\n");
        assert!(!out.status.success(), "{name} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_training_data_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"text\": \"ok\", \"label\": \"POSITIVE\"}\nnot json\n",
    )
    .unwrap();
    let out = bin()
        .args(["train", "--train"])
        .arg(&p)
        .arg("--out")
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2"), "{err}");
    assert!(!dir.path().join("m").exists());
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "train",
        "eval",
        "score",
        "run",
        "topics",
        "ctl",
        "hash-password",
    ] {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[test]
fn global_flags_work_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    for args in [vec!["ctl", "status", "--socket"], vec!["ctl", "--socket"]] {
        let mut cmd = bin();
        cmd.args(&args).arg(&sock);
        if args.len() == 2 {
            cmd.arg("status");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("none.sock") && !err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn topics_fail_fast_naming_a_wrong_broker_address() {
    // Nothing listens on port 1.
    for args in [
        vec!["topics", "create", "t"],
        vec!["topics", "read", "t"],
        vec!["topics", "produce", "t", "README.md"],
    ] {
        let start = std::time::Instant::now();
        let out = bin()
            .args(&args)
            .args(["--brokers", "127.0.0.1:1", "--timeout-ms", "2000"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("127.0.0.1:1"), "{args:?}: {err}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "{args:?} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn packaging_is_valid_docker_compose_dockerfile_prometheus_and_systemd() {
    // Docker's own Dockerfile parser, `docker-compose config`, `promtool check config`: see
    // the script. No Docker engine runs here, so the images are not built by this test.
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check-packaging.py"
        ))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_bad_configuration_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[[deployments]]\nname = \"d\"\n[deployments.input]\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"in\"\n[deployments.output]\ntopic = \"out\"\n";
    let cases = [
        (
            "unknown",
            format!("{base}\n[deployments.batch]\nmax_recordz = 5\n"),
            "max_recordz",
        ),
        (
            "badtype",
            format!("{base}\n[deployments.batch]\nmax_records = \"many\"\n"),
            "max_records",
        ),
        ("notopic", base.replace("topic = \"in\"\n", ""), "topic"),
        (
            "emptytopic",
            base.replace("topic = \"in\"", "topic = \"\""),
            "deployments[0].input.topic",
        ),
        (
            "range",
            format!("{base}\n[deployments.batch]\nmax_records = 0\n"),
            "deployments[0].batch.max_records",
        ),
    ];
    for (name, toml, key) in cases {
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, toml).unwrap();
        let out = bin().args(["run", "--config"]).arg(&p).output().unwrap();
        assert!(!out.status.success(), "{name} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{name}: {err}");
        // Said once, with whole key paths.
        let body = err
            .trim()
            .trim_start_matches("error: configuration error: ");
        assert!(
            !body.is_empty() && err.matches(body).count() == 1,
            "{name} printed twice: {err}"
        );
        assert!(
            !err.contains("]input") && !err.contains("]batch"),
            "{name}: {err}"
        );
    }
    // A malformed password hash is refused at start, naming the user.
    let out = bin()
        .args(["run"])
        .env("STREAMSCORE__AUTH__USERS__ADMIN", "not-a-hash")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.users.admin") && err.contains("hash-password"),
        "{err}"
    );
    let out = bin()
        .args(["run"])
        .env("STREAMSCORE__LOG__FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("format"));
    let out = bin().args(["run", "--input-topic", "in"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output-topic"));
}

/// A spawned process killed on drop, so a failing assertion never leaves it running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unreachable_broker_keeps_retrying_and_still_stops_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let mut child = KillOnDrop(
        bin()
            .args([
                "run",
                "--brokers",
                &format!("127.0.0.1:{port}"),
                "--input-topic",
                "in",
                "--output-topic",
                "out",
            ])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("ctl.sock"))
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    let mut text = String::new();
    while start.elapsed() < std::time::Duration::from_secs(30) {
        text = std::fs::read_to_string(&log).unwrap();
        if text.matches("cannot start; retrying").count() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        text.matches("cannot start; retrying").count() >= 2 && text.contains("brokers unreachable"),
        "{text}"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "still running while the broker is down"
    );
    let stopping = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(stopping.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn readme_examples_and_reference_are_true() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();

    // The `score` example prints what the README says it prints.
    let i = lines
        .iter()
        .position(|l| l.starts_with("echo '") && l.ends_with("| streamscore score"))
        .expect("the README's score example");
    let input = lines[i]
        .trim_start_matches("echo '")
        .split("' |")
        .next()
        .unwrap();
    let expected = lines[i + 1].trim_start_matches("# ");
    let out = run_with_stdin(&["score"], &format!("{input}\n"));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);

    // Every `streamscore COMMAND [SUBCOMMAND]` in a code block exists.
    let mut in_code = false;
    let mut checked = 0;
    for line in &lines {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let calls = line.match_indices("streamscore ").filter(|&(i, _)| {
            let before = &line[..i];
            before.is_empty()
                || before.ends_with([' ', '(', '|'])
                || before.ends_with("target/release/")
        });
        for part in calls.map(|(i, _)| &line[i + "streamscore ".len()..]) {
            let words: Vec<&str> = part.split_whitespace().take(2).collect();
            let Some(&cmd) = words.first() else { continue };
            if !cmd.chars().all(|c| c.is_ascii_lowercase() || c == '-') || cmd.is_empty() {
                continue;
            }
            let mut args = vec![cmd];
            if matches!(cmd, "topics" | "ctl") {
                args.extend(words.get(1));
            }
            args.push("--help");
            let out = bin().args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "README line {line:?}: {args:?} is not a command"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} commands found in the README");

    // Every key of config/default.toml is in the configuration reference.
    let defaults = std::fs::read_to_string(format!("{root}/config/default.toml")).unwrap();
    let mut section = String::new();
    for line in defaults.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !key.starts_with('#') && !key.contains(' ') {
                let path = format!("{section}.{key}");
                assert!(readme.contains(&path), "README does not document {path}");
            }
        }
    }
}

#[test]
fn the_binary_allocates_with_jemalloc_and_its_settings_for_c_code_too() {
    // jemalloc reports where its settings came from when asked in `MALLOC_CONF`. Only an
    // unprefixed build reads that variable and the `malloc_conf` symbol (a prefixed one reads
    // `_RJEM_MALLOC_CONF`), and only an unprefixed build is the `malloc` librdkafka calls.
    let out = bin()
        .arg("--version")
        .env("MALLOC_CONF", "confirm_conf:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let wanted = streamscore::memory::SETTINGS.to_str().unwrap();
    assert!(
        err.contains(&format!("global variable malloc_conf): \"{wanted}\"")),
        "jemalloc did not read the built-in settings: {err}"
    );
    assert!(err.contains("-- Set conf value: narenas:2"), "{err}");
}
