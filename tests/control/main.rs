//! The control plane over real HTTP, a real broker and the real binary: the seeds' requests,
//! auth refusals, refused uploads, hot swap under load, restart, and the control socket.

#[path = "../pipeline/harness.rs"]
#[allow(dead_code)]
mod harness;
mod limits;
mod operations;
mod sasl;

use harness::{rt, tweets, Broker};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "test-access-key";
const SIGNING_KEY: &str = "test-signing-key";
const USER: &str = "admin";
const PASSWORD: &str = "correct horse";
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/sentiment-en.model");
const PARTITIONS: i32 = 4;

/// `streamscore run` serving the API only, on a free port, with test credentials.
struct Api {
    child: Child,
    log: PathBuf,
    base: String,
    socket: PathBuf,
}

impl Api {
    fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Api {
        Api::start_with(dir, extra_env, &[])
    }

    /// [`Api::start`] with more `[control.kafka]` settings for API deployments.
    fn start_with(dir: &Path, extra_env: &[(&str, &str)], control_kafka: &[(&str, &str)]) -> Api {
        let log = dir.join(format!(
            "api-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let socket = dir.join("ctl.sock");
        let hash = streamscore::auth::hash_password(PASSWORD).unwrap();
        // librdkafka keys contain dots, so they come from a file rather than the environment.
        let config = dir.join("test.toml");
        let mut toml = String::from("[control.kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n");
        for (k, v) in control_kafka {
            toml += &format!("{k:?} = {v:?}\n");
        }
        std::fs::write(&config, toml).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamscore"));
        cmd.args(["run", "--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .env("STREAMSCORE__AUTH__ACCESS_KEYS", ACCESS_KEY)
            .env("STREAMSCORE__AUTH__SIGNING_KEY", SIGNING_KEY)
            .env("STREAMSCORE__AUTH__USERS__ADMIN", &hash)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let start = Instant::now();
        let base = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = harness::http_address(&text) {
                break format!("http://{addr}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no HTTP address in log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Api {
            child,
            log,
            base,
            socket,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert_eq!(s.code(), Some(0), "{}", self.log_text());
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no clean exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn upload(base: &str, ctx: &str, key: &str, name: &str, bytes: Vec<u8>) -> Value {
    let form = Form::new().part("model_file", Part::bytes(bytes).file_name(name.to_owned()));
    let r = reqwest::Client::new()
        .put(format!("{base}/pm/v1/model/{ctx}?accesskey={key}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the seeds answer 200 even on failure");
    r.json().await.unwrap()
}

async fn download(base: &str, ctx: &str, key: &str) -> reqwest::Response {
    reqwest::get(format!("{base}/pm/v1/model/{ctx}?accesskey={key}"))
        .await
        .unwrap()
}

async fn token(base: &str, user: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/v2/identity/token"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

async fn bearer(base: &str) -> String {
    let v: Value = token(base, USER, PASSWORD).await.json().await.unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The seed's POST body, pointed at the local broker (no user/password: plaintext).
fn seed_body(brokers: &str, input: &str, output: &str) -> Value {
    let conn = json!({
        "kafka_brokers_sasl": [brokers],
        "kafka_admin_url": "https://kafka-admin.example:443",
        "api_key": "Dv5kEVNNsbuJ9RFEKdUhIn2hruipIrsBolge6v1uQmTzEQti",
        "mqlight_lookup_url": "https://mqlight.example/Lookup?serviceId=1",
        "kafka_rest_url": "https://kafka-rest.example:443"
    });
    json!({
        // Names are unique per daemon: the seed's own name for input `in`.
        "name": if input == "in" { "Pronostic des opinions".to_owned() } else { format!("Pronostic des opinions ({input})") },
        "type": "stream",
        "description": "Déploiement en flux",
        "input": {"connection": conn, "source": {"topic": input, "type": "kafka"}},
        "output": {"connection": conn, "target": {"topic": output, "type": "kafka"}}
    })
}

const DEPLOYMENTS: &str = "/v3/wml_instances/inst-1/published_models/sentiment/deployments";

async fn create(base: &str, tok: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{DEPLOYMENTS}"))
        .bearer_auth(tok)
        .header("X-Spark-Service-Instance", "eyJjcmVkZW50aWFscyI6IHt9fQ==")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get_deployment(base: &str, tok: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{DEPLOYMENTS}/{id}"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

async fn patch_status(base: &str, tok: &str, id: &str, value: &str) -> reqwest::Response {
    reqwest::Client::new()
        .patch(format!("{base}{DEPLOYMENTS}/{id}"))
        .bearer_auth(tok)
        .json(&json!([{"op": "replace", "path": "/status", "value": value}]))
        .send()
        .await
        .unwrap()
}

/// For tests about desired states rather than records: running, with or without partitions
/// yet (tansu may keep a rejoining group unassigned for minutes).
const RUNNING_OR_ASSIGNING: &str = "RUNNING|ASSIGNING";

/// Waits for a status (`A|B`: either).
async fn wait_status(base: &str, tok: &str, id: &str, want: &str) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = get_deployment(base, tok, id).await.json().await.unwrap();
        if want
            .split('|')
            .any(|w| v["entity"]["status"].as_str() == Some(w))
        {
            return v;
        }
        // RUNNING waits for partitions, and tansu may leave a rejoining member unassigned
        // for 60–120 s: wait for it, bounded.
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "status never {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn setup_broker(rt: &tokio::runtime::Runtime) -> Broker {
    let broker = Broker::start();
    rt.block_on(async {
        for t in ["in", "out", "out.dlq"] {
            broker.create_topic(t, PARTITIONS).await;
        }
    });
    broker
}

#[test]
fn seed_requests_work_unchanged() {
    let rt = rt();
    let broker = setup_broker(&rt);
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    let base = api.base.clone();
    rt.block_on(async {
        // Model API (seeds 000 and 001): PUT then GET returns the same bytes and file name.
        let model = std::fs::read(MODEL).unwrap();
        let v = upload(
            &base,
            "sentiment",
            ACCESS_KEY,
            "sentiment.str",
            model.clone(),
        )
        .await;
        assert_eq!(v["flag"], true, "{v}");
        let r = download(&base, "sentiment", ACCESS_KEY).await;
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(
            r.headers()["content-disposition"],
            "attachment; filename=\"sentiment.str\"; filename*=UTF-8''sentiment.str"
        );
        assert_eq!(r.bytes().await.unwrap().to_vec(), model);
        let v: Value = download(&base, "nope", ACCESS_KEY)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["flag"], false);

        // Token, then the deployment lifecycle (seed 002).
        let tok = bearer(&base).await;
        // A deployment of a model not uploaded yet fails with the reason, then starts when
        // the model arrives.
        let early: Value = reqwest::Client::new()
            .post(format!(
                "{base}/v3/wml_instances/inst-1/published_models/later/deployments"
            ))
            .bearer_auth(&tok)
            .json(&seed_body(&broker.addr, "in", "out"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(early["entity"]["status"], "FAILED", "{early}");
        assert!(early["entity"]["status_details"]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown model"));
        let early_id = early["metadata"]["guid"].as_str().unwrap().to_owned();
        assert_eq!(
            upload(&base, "later", ACCESS_KEY, "later.model", model.clone()).await["flag"],
            true
        );
        let url =
            format!("{base}/v3/wml_instances/inst-1/published_models/later/deployments/{early_id}");
        let start = Instant::now();
        loop {
            let v: Value = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["entity"]["status"] == "RUNNING" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = reqwest::Client::new()
            .delete(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = create(&base, &tok, &seed_body(&broker.addr, "in", "out")).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let id = v["metadata"]["guid"].as_str().unwrap().to_owned();
        assert!(v["metadata"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{DEPLOYMENTS}/{id}")));
        assert!(
            matches!(
                v["entity"]["status"].as_str(),
                Some("INITIALIZING" | "RUNNING")
            ),
            "{v}"
        );
        assert_eq!(v["entity"]["input"]["connection"]["api_key"], "********");
        assert!(
            !v.to_string().contains("Dv5kEVNNsbuJ9RFE"),
            "secrets never echoed"
        );
        let v = wait_status(&base, &tok, &id, "RUNNING").await;
        assert_eq!(v["entity"]["deployed_version"]["guid"], "1");

        broker.produce("in", &tweets(200)).await;
        let out = broker.read_all(
            "out",
            PARTITIONS,
            200,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(out.len(), 200);
        assert!(out
            .iter()
            .all(|r| r.json()["model"]["version"] == "1" && r.json()["deployment"] == id.as_str()));

        let list: Value = reqwest::Client::new()
            .get(format!("{base}{DEPLOYMENTS}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["count"], 1);

        assert_eq!(
            patch_status(&base, &tok, &id, "STOPPED").await.status(),
            204
        );
        wait_status(&base, &tok, &id, "STOPPED").await;
        assert_eq!(
            patch_status(&base, &tok, &id, "RUNNING").await.status(),
            204
        );
        wait_status(&base, &tok, &id, RUNNING_OR_ASSIGNING).await;
        assert_eq!(patch_status(&base, &tok, &id, "PAUSED").await.status(), 400);

        let r = reqwest::Client::new()
            .delete(format!("{base}{DEPLOYMENTS}/{id}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(get_deployment(&base, &tok, &id).await.status(), 404);
        let r = create(&base, &tok, &json!({"name": "x", "type": "batch"})).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].as_str().is_some());
        // The API takes the delivery guarantee, and refuses one that does not exist.
        let mut eos = seed_body(&broker.addr, "in", "out");
        eos["delivery"] = json!("exactly_twice");
        assert_eq!(create(&base, &tok, &eos).await.status(), 400);
        eos["delivery"] = json!("exactly_once");
        let r = create(&base, &tok, &eos).await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["entity"]["delivery"], "exactly_once");
    });
    api.stop();
}

#[test]
fn auth_refusals_change_nothing() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    let base = api.base.clone();
    rt.block_on(async {
        let model = std::fs::read(MODEL).unwrap();
        let v = upload(&base, "m", "wrong-key", "m.model", model[..1000].to_vec()).await;
        assert_eq!(v["flag"], false);
        assert!(v["message"].as_str().unwrap().contains("access key"));
        assert!(!dir.path().join("state/models/m").exists());
        let v: Value = download(&base, "m", "").await.json().await.unwrap();
        assert_eq!(v["flag"], false);

        assert_eq!(token(&base, USER, "wrong").await.status(), 401);
        assert_eq!(token(&base, "nobody", PASSWORD).await.status(), 401);
        let body = seed_body("127.0.0.1:9", "in", "out");
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{base}{DEPLOYMENTS}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let reason: Value = r.json().await.unwrap();
        assert!(reason["message"].as_str().unwrap().contains("missing"));
        let item = format!("{base}{DEPLOYMENTS}/some-id");
        assert_eq!(c.get(&item).send().await.unwrap().status(), 401);
        assert_eq!(c.delete(&item).send().await.unwrap().status(), 401);
        let patch = json!([{"op": "replace", "path": "/status", "value": "STOPPED"}]);
        assert_eq!(
            c.patch(&item).json(&patch).send().await.unwrap().status(),
            401
        );
        assert_eq!(
            c.get(format!("{base}{DEPLOYMENTS}"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let forged =
            streamscore::auth::Authenticator::new(vec![], Default::default(), b"other key", 3600)
                .issue(USER);
        assert_eq!(create(&base, &forged, &body).await.status(), 401);
        let expired = streamscore::auth::Authenticator::new(
            vec![],
            Default::default(),
            SIGNING_KEY.as_bytes(),
            -60,
        )
        .issue(USER);
        let r = create(&base, &expired, &body).await;
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("expired"));
        let tok = bearer(&base).await;
        let list: Value = c
            .get(format!("{base}{DEPLOYMENTS}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["count"], 0, "no refused request created anything");

        // The small things: a 401 says how to authenticate, the scheme's case does not
        // matter, a wrong method gets a JSON body.
        let r = c.get(format!("{base}{DEPLOYMENTS}")).send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"streamscore\""
        );
        let r = token(&base, USER, "wrong").await;
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"streamscore\""
        );
        let r = c
            .get(format!("{base}{DEPLOYMENTS}"))
            .header("Authorization", format!("bearer {tok}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c.post(format!("{base}/health/live")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "method_not_allowed", "{v}");

        // Failed logins are limited per address: after 5 in a minute, 429 before any hashing,
        // even with the right password.
        for _ in 0..5 {
            token(&base, USER, "wrong").await;
        }
        let r = token(&base, USER, PASSWORD).await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
    });
    api.stop();
}

#[test]
fn refused_uploads_leave_the_old_model_serving() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(
        dir.path(),
        &[("STREAMSCORE__HTTP__MAX_MODEL_BYTES", "5000000")],
    );
    let base = api.base.clone();
    rt.block_on(async {
        let model = std::fs::read(MODEL).unwrap();
        assert_eq!(
            upload(&base, "m", ACCESS_KEY, "good.model", model.clone()).await["flag"],
            true
        );
        let mut flipped = model.clone();
        flipped[model.len() / 2] ^= 0x20;
        let mut random = vec![0u8; 100_000];
        let mut x = 7u32;
        for b in random.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "empty"),
            ("truncated", model[..model.len() / 2].to_vec(), "truncated"),
            ("flipped", flipped, "checksum"),
            ("random", random, "not a streamscore model"),
            (
                "zip",
                b"PK\x03\x04\x14\x00\x00\x00 other format".to_vec(),
                "not a streamscore model",
            ),
            ("big", vec![b'S'; 6_000_000], "limit"),
        ];
        for (name, bytes, why) in cases {
            let v = upload(&base, "m", ACCESS_KEY, name, bytes).await;
            assert_eq!(v["flag"], false, "{name}");
            assert!(v["message"].as_str().unwrap().contains(why), "{name}: {v}");
        }
        // Refused before the body is read: a small body, so the client is still sending
        // nothing when the answer comes (curl waits for `100 Continue` on large ones).
        let v = upload(&base, "..%2Fx", ACCESS_KEY, "x", b"tiny".to_vec()).await;
        assert_eq!(v["flag"], false, "{v}");
        let v = upload(&base, "m", "wrong-key", "x", b"tiny".to_vec()).await;
        assert!(v["message"].as_str().unwrap().contains("access key"), "{v}");
        // Two model_file parts: refused, not "the first one wins".
        let form = Form::new()
            .part(
                "model_file",
                Part::bytes(model.clone()).file_name("a.model"),
            )
            .part(
                "model_file",
                Part::bytes(model.clone()).file_name("b.model"),
            );
        let v: Value = reqwest::Client::new()
            .put(format!("{base}/pm/v1/model/m?accesskey={ACCESS_KEY}"))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["flag"], false, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("more than one"),
            "{v}"
        );
        let r = download(&base, "m", ACCESS_KEY).await;
        assert_eq!(
            r.headers()["content-disposition"],
            "attachment; filename=\"good.model\"; filename*=UTF-8''good.model"
        );
        assert_eq!(r.bytes().await.unwrap().to_vec(), model);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("state/models/m"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files.len(), 2, "only v1.model and v1.json: {files:?}");
        let mut dirs: Vec<_> = std::fs::read_dir(dir.path().join("state/models"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(
            dirs,
            ["m", "uploads~"],
            "one context, and the staging folder"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("state/models/uploads~"))
                .unwrap()
                .count(),
            0,
            "refused uploads leave nothing staged"
        );
    });
    api.stop();
}

#[test]
fn hot_swap_under_load_loses_and_duplicates_nothing() {
    const N: usize = 50_000;
    let rt = rt();
    let broker = setup_broker(&rt);
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    let base = api.base.clone();
    let data = tweets(N);
    rt.block_on(async {
        let model = std::fs::read(MODEL).unwrap();
        assert_eq!(
            upload(&base, "sentiment", ACCESS_KEY, "v.model", model.clone()).await["flag"],
            true
        );
        let tok = bearer(&base).await;
        let v: Value = create(&base, &tok, &seed_body(&broker.addr, "in", "out"))
            .await
            .json()
            .await
            .unwrap();
        let id = v["metadata"]["guid"].as_str().unwrap().to_owned();
        wait_status(&base, &tok, &id, "RUNNING").await;
        // Stream in six slices, uploading a new version between slices.
        for (i, chunk) in data.chunks(N / 6 + 1).enumerate() {
            broker.produce("in", chunk).await;
            if i < 5 {
                let v = upload(&base, "sentiment", ACCESS_KEY, "v.model", model.clone()).await;
                assert_eq!(v["flag"], true);
            }
        }
        let v = get_deployment(&base, &tok, &id)
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(v["entity"]["deployed_version"]["guid"], "6");
    });
    let inputs: HashMap<(i32, i64), ()> = broker
        .read_all(
            "in",
            PARTITIONS,
            N,
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .into_iter()
        .map(|r| ((r.partition, r.offset), ()))
        .collect();
    assert_eq!(inputs.len(), N);
    let out = broker.read_all(
        "out",
        PARTITIONS,
        N,
        Duration::from_secs(2),
        Duration::from_secs(120),
    );
    let mut seen: HashMap<(i32, i64), usize> = HashMap::new();
    for r in &out {
        *seen.entry(r.source()).or_default() += 1;
    }
    let missing = inputs.keys().filter(|k| !seen.contains_key(k)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!((missing, duplicates), (0, 0), "{}", api.log_text());
    // Within each source partition, in source-offset order, versions never go backwards.
    let mut by_source: Vec<(i32, i64, u64)> = out
        .iter()
        .map(|r| {
            let (p, o) = r.source();
            (
                p,
                o,
                r.headers["streamscore.model.version"].parse().unwrap(),
            )
        })
        .collect();
    by_source.sort_unstable();
    for w in by_source.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(
                w[0].2 <= w[1].2,
                "version went backwards in partition {}: {:?}",
                w[0].0,
                w
            );
        }
    }
    let versions: std::collections::BTreeSet<u64> = by_source.iter().map(|x| x.2).collect();
    assert!(
        versions.len() >= 2,
        "outputs carry the new versions: {versions:?}"
    );
    api.stop();
}

#[test]
fn restart_restores_models_and_deployments_and_ctl_acts_like_patch() {
    let rt = rt();
    let broker = setup_broker(&rt);
    rt.block_on(broker.create_topic("in2", PARTITIONS));
    rt.block_on(broker.create_topic("out2", PARTITIONS));
    // Dead letters need their topic too (`<output>.dlq`): a deployment without it fails, named.
    rt.block_on(broker.create_topic("out2.dlq", PARTITIONS));
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    let (stopped_id, running_id) = rt.block_on(async {
        let base = api.base.clone();
        assert_eq!(
            upload(
                &base,
                "sentiment",
                ACCESS_KEY,
                "s.model",
                std::fs::read(MODEL).unwrap()
            )
            .await["flag"],
            true
        );
        let tok = bearer(&base).await;
        let a: Value = create(&base, &tok, &seed_body(&broker.addr, "in", "out"))
            .await
            .json()
            .await
            .unwrap();
        let b: Value = create(&base, &tok, &seed_body(&broker.addr, "in2", "out2"))
            .await
            .json()
            .await
            .unwrap();
        let (a, b) = (
            a["metadata"]["guid"].as_str().unwrap().to_owned(),
            b["metadata"]["guid"].as_str().unwrap().to_owned(),
        );
        wait_status(&base, &tok, &a, RUNNING_OR_ASSIGNING).await;
        wait_status(&base, &tok, &b, RUNNING_OR_ASSIGNING).await;
        assert_eq!(patch_status(&base, &tok, &a, "STOPPED").await.status(), 204);
        (a, b)
    });
    // Deployment records hold credentials: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(
        dir.path()
            .join(format!("state/deployments/{running_id}.json")),
    )
    .unwrap()
    .permissions()
    .mode();
    assert_eq!(mode & 0o777, 0o600);
    api.stop();

    let api = Api::start(dir.path(), &[]);
    let mode = std::fs::metadata(&api.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "control socket is owner-only");
    rt.block_on(async {
        let base = api.base.clone();
        let tok = bearer(&base).await;
        wait_status(&base, &tok, &stopped_id, "STOPPED").await;
        wait_status(&base, &tok, &running_id, RUNNING_OR_ASSIGNING).await;
        assert_eq!(
            download(&base, "sentiment", ACCESS_KEY)
                .await
                .bytes()
                .await
                .unwrap()
                .len(),
            std::fs::read(MODEL).unwrap().len()
        );
    });

    // ctl stop / start behave like PATCH.
    let ctl = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .arg("ctl")
            .arg("--socket")
            .arg(&api.socket)
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    assert_eq!(ctl(&["stop", &running_id])["ok"], true);
    assert_eq!(
        ctl(&["status", &running_id])["deployment"]["status"],
        "STOPPED"
    );
    assert_eq!(
        ctl(&["start", "Pronostic des opinions"])["ok"],
        true,
        "by name: the first match"
    );
    assert_eq!(ctl(&["start", &running_id])["ok"], true);
    let all = ctl(&["status"]);
    assert_eq!(all["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(ctl(&["stop", "no-such-deployment"])["ok"], false);
    rt.block_on(async {
        let tok = bearer(&api.base).await;
        wait_status(&api.base, &tok, &running_id, RUNNING_OR_ASSIGNING).await;
    });
    api.stop();
}

#[test]
fn openapi_document_matches_the_server() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    rt.block_on(async {
        let c = reqwest::Client::new();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 6);
        for (path, ops) in paths {
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            for method in ["get", "put", "post", "patch", "delete"] {
                let r = c
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("{}{concrete}", api.base),
                    )
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                if ops.get(method).is_some() {
                    assert!(
                        status != 405 && !body.contains("no such route"),
                        "{method} {path} documented but not served ({status} {body})"
                    );
                } else {
                    assert_eq!(status, 405, "{method} {path} served but not documented");
                }
            }
        }
        let r = c
            .get(format!("{}/v9/undocumented", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    });
    api.stop();
}
