use super::*;
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> Environment {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Environment::with_prefix("STREAMSCORE")
        .prefix_separator("__")
        .separator("__")
        .source(Some(map))
}

fn exposed(keys: &[secrecy::SecretString]) -> Vec<&str> {
    use secrecy::ExposeSecret;
    keys.iter().map(|k| k.expose_secret()).collect()
}

fn load_toml(toml: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml).unwrap();
    Settings::load_with_env(Some(&p), env(&[]))
}

const GOOD: &str = r#"
[[deployments]]
name = "tweets"
[deployments.input]
bootstrap_servers = "127.0.0.1:9092"
topic = "in"
[deployments.output]
topic = "out"
"#;

#[test]
fn defaults_load_and_a_file_adds_deployments() {
    let s = Settings::load_with_env(None, env(&[])).unwrap();
    assert_eq!(s.log.level, "info");
    assert!(s.deployments.is_empty());
    let s = load_toml(GOOD).unwrap();
    let d = &s.deployments[0];
    assert_eq!(d.dlq_topic(), "out.dlq");
    assert_eq!(d.group_id(), "streamscore-tweets");
    assert_eq!(d.batch, BatchConfig::default());
    assert_eq!(d.input.format, crate::input::InputFormat::Json);
}

#[test]
fn environment_overrides_the_file() {
    let s = Settings::load_with_env(
        None,
        env(&[
            ("STREAMSCORE__LOG__LEVEL", "debug"),
            ("STREAMSCORE__SHUTDOWN__DRAIN_TIMEOUT_MS", "5000"),
        ]),
    )
    .unwrap();
    assert_eq!(s.log.level, "debug");
    assert_eq!(s.shutdown.drain_timeout_ms, 5000);
}

#[test]
fn unknown_key_is_named() {
    let err = load_toml(&format!("{GOOD}\nworkerz = 3\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("workerz"), "{err}");
    let err = load_toml("[log]\nlevle = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("levle"), "{err}");
}

#[test]
fn bad_type_is_named() {
    let err = load_toml(&GOOD.replace(
        "topic = \"in\"",
        "topic = \"in\"\nmax_record_bytes = \"lots\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_record_bytes"), "{err}");
    let err = Settings::load_with_env(
        None,
        env(&[("STREAMSCORE__SHUTDOWN__DRAIN_TIMEOUT_MS", "soon")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("drain_timeout_ms"), "{err}");
}

#[test]
fn missing_or_bad_values_are_named() {
    let err = load_toml(&GOOD.replace("topic = \"out\"", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic"), "{err}");
    let err = load_toml(&GOOD.replace("topic = \"in\"", "topic = \"\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("deployments[0].input.topic"), "{err}");
    let err = load_toml(&format!(
        "{GOOD}\n[deployments.kafka]\n\"enable.auto.offset.store\" = \"true\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("enable.auto.offset.store"), "{err}");
    let err = load_toml(&format!("{GOOD}{GOOD}")).unwrap_err().to_string();
    assert!(err.contains("duplicate"), "{err}");
}

#[test]
fn access_keys_come_from_a_comma_separated_variable() {
    let s =
        Settings::load_with_env(None, env(&[("STREAMSCORE__AUTH__ACCESS_KEYS", "k1,k2")])).unwrap();
    assert_eq!(exposed(&s.auth.access_keys), ["k1", "k2"]);
    let s =
        Settings::load_with_env(None, env(&[("STREAMSCORE__AUTH__ACCESS_KEYS", "solo")])).unwrap();
    assert_eq!(exposed(&s.auth.access_keys), ["solo"]);
    assert!(
        !format!("{:?}", s.auth).contains("solo"),
        "secrets never print"
    );
}

#[test]
fn managed_kafka_keys_are_refused_in_every_table() {
    for (table, key) in [
        ("deployments.kafka", "enable.idempotence"),
        ("deployments.input.kafka", "enable.auto.offset.store"),
        ("deployments.input.kafka", "enable.auto.commit"),
        ("deployments.output.kafka", "acks"),
        ("deployments.output.kafka", "transactional.id"),
    ] {
        let err = load_toml(&format!("{GOOD}\n[{table}]\n\"{key}\" = \"x\"\n"))
            .unwrap_err()
            .to_string();
        let short = table.trim_start_matches("deployments.");
        assert!(
            err.contains(&format!("deployments[0].{short}.\"{key}\"")) && err.contains("managed"),
            "{table}.{key}: {err}"
        );
    }
    let err = load_toml("[control.kafka]\n\"enable.auto.commit\" = \"false\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("control.kafka.\"enable.auto.commit\""),
        "{err}"
    );
}

#[test]
fn delivery_and_commit_settings_are_read_and_checked() {
    let with =
        |line: &str| GOOD.replace("name = \"tweets\"", &format!("name = \"tweets\"\n{line}"));
    let s = load_toml(&format!(
        "{}\n[deployments.commit]\ninterval_ms = 100\nmax_records = 5000\n",
        with("delivery = \"exactly_once\"")
    ))
    .unwrap();
    let d = &s.deployments[0];
    assert_eq!(d.delivery, Delivery::ExactlyOnce);
    assert_eq!((d.commit.interval_ms, d.commit.max_records), (100, 5000));
    let err = load_toml(&with("delivery = \"twice\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("twice"), "{err}");
    let err = load_toml(&format!(
        "{GOOD}\n[deployments.batch]\nmax_in_flight = 10\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("deployments[0].batch.max_in_flight"), "{err}");
    for threads in [0, 65] {
        let err = load_toml(&format!(
            "{GOOD}\n[deployments.batch]\nscoring_threads = {threads}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("deployments[0].batch.scoring_threads"),
            "{err}"
        );
    }
    // API-created deployments take their batching from control: checked at load too.
    let err = Settings::load_with_env(
        None,
        env(&[("STREAMSCORE__CONTROL__BATCH__MAX_RECORDS", "0")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("control.batch.max_records"), "{err}");
}

#[test]
fn the_compose_config_loads_with_its_deployment() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/compose.toml");
    let s = Settings::load_with_env(Some(Path::new(path)), env(&[])).unwrap();
    assert_eq!(s.http.listen, "0.0.0.0:8080");
    let d = &s.deployments[0];
    assert_eq!(
        (
            d.name.as_str(),
            d.input.topic.as_str(),
            d.output.topic.as_str()
        ),
        ("tweets", "tweets", "tweets.scored")
    );
    assert_eq!(d.input.bootstrap_servers, "kafka:9092");
    assert_eq!(d.output_servers(), "kafka:9092");
    assert_eq!(d.start_from, StartFrom::Earliest);
}

#[test]
fn a_deployment_without_bootstrap_servers_uses_the_local_broker() {
    let s = load_toml(&GOOD.replace("bootstrap_servers = \"127.0.0.1:9092\"\n", "")).unwrap();
    assert_eq!(s.deployments[0].input.bootstrap_servers, "127.0.0.1:9092");
}

#[test]
fn a_malformed_password_hash_is_refused_naming_the_user() {
    let e = Settings::load_with_env(None, env(&[("STREAMSCORE__AUTH__USERS__BOB", "plain")]))
        .unwrap_err();
    assert!(e.to_string().contains("auth.users.bob"), "{e}");
    let good = crate::auth::hash_password("pw").unwrap();
    Settings::load_with_env(None, env(&[("STREAMSCORE__AUTH__USERS__BOB", &good)])).unwrap();
}

#[test]
fn start_from_is_validated_and_auto_offset_reset_is_refused() {
    let s = load_toml(&GOOD.replace(
        "[deployments.input]",
        "start_from = \"latest\"\n[deployments.input]",
    ))
    .unwrap();
    assert_eq!(s.deployments[0].start_from, StartFrom::Latest);
    let e = load_toml(&format!(
        "{GOOD}[deployments.kafka]\n\"auto.offset.reset\" = \"latest\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("start_from"), "{e}");
}

#[test]
fn subjects_and_summary_settings_are_read_and_checked_by_name() {
    let s = load_toml(&format!(
        "{GOOD}[deployments.subjects]\nacme = [\"acme\", \"#acmephone\", \"@acme\"]\n\
         [deployments.summary]\ntopic = \"opinion\"\nwindow_ms = 30000\n"
    ))
    .unwrap();
    let d = &s.deployments[0];
    assert_eq!(d.subjects["acme"], ["acme", "#acmephone", "@acme"]);
    assert_eq!(d.summary.topic.as_deref(), Some("opinion"));
    assert_eq!(d.summary.window_ms, 30_000);
    assert_eq!(d.summary.allowed_lateness_ms, 10_000, "default lateness");
    for (extra, key) in [
        (
            "[deployments.subjects]\n\"a b\" = [\"x\"]\n",
            "deployments[0].subjects",
        ),
        (
            "[deployments.summary]\nwindow_ms = 10\n",
            "deployments[0].summary.window_ms",
        ),
        (
            "[deployments.summary]\ntopic = \"in\"\n",
            "deployments[0].summary.topic",
        ),
        ("[control.summary]\nwindow_ms = 10\n", "summary.window_ms"),
    ] {
        let err = load_toml(&format!("{GOOD}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}
