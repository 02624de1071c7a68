//! Opinion summaries end to end, on a real broker and the real binary: exact window counts
//! from known timestamps across a restart, the live page in a real headless Chromium, and the
//! page's refusals.

mod browser;
#[path = "../pipeline/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::{http_address, rt, wait_until, Broker, Daemon, DaemonArgs, Record};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const USER: &str = "viewer";
const PASSWORD: &str = "opinion please";
const SUBJECTS: [&str; 4] = [
    "--subject",
    "acme=acme,#acmephone,@acme",
    "--subject",
    "tv=tv,television",
];

/// A config file with one user and a fixed signing key.
fn auth_config(dir: &Path) -> String {
    let hash = streamscore::auth::hash_password(PASSWORD).unwrap();
    let path = dir.join("auth.toml");
    std::fs::write(
        &path,
        format!(
            "[auth]\nsigning_key = \"opinion-test-signing-key\"\nusers = {{ {USER} = {hash:?} }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Produces `(text, timestamp ms)` tweets with those record timestamps.
async fn produce_at(broker: &Broker, topic: &str, tweets: &[(&str, i64)]) {
    let p = broker.producer();
    for (i, (text, ts)) in tweets.iter().enumerate() {
        let value = serde_json::json!({"id": format!("k{i}-{ts}"), "text": text}).to_string();
        p.send(
            FutureRecord::to(topic)
                .key(&format!("k{i}"))
                .payload(&value)
                .timestamp(*ts),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("test produce");
    }
}

/// The summary topic's records by key (the last record of each key wins, as compaction keeps
/// it), and how many closed records each key got.
fn summaries(
    broker: &Broker,
    topic: &str,
    expect: usize,
) -> (HashMap<String, Value>, HashMap<String, usize>) {
    let records: Vec<Record> = broker.read_all(
        topic,
        1,
        expect,
        Duration::from_secs(2),
        Duration::from_secs(20),
    );
    let mut last = HashMap::new();
    let mut closed = HashMap::new();
    for r in records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let v = r.json();
        if v["closed"] == true {
            *closed.entry(key.clone()).or_insert(0) += 1;
        }
        last.insert(key, v);
    }
    (last, closed)
}

fn counts(v: &Value) -> (u64, u64) {
    (
        v["positive"].as_u64().unwrap(),
        v["negative"].as_u64().unwrap(),
    )
}

fn start(broker: &Broker, dir: &Path, name: &str, extra: &[&str]) -> Daemon {
    Daemon::start(&DaemonArgs {
        brokers: &broker.addr,
        input: "tweets",
        output: "scored",
        name,
        group: &format!("g-{name}"),
        workers: 1,
        log_dir: dir,
        extra,
    })
}

/// A runtime, a broker with `topics` (name, partitions), and a scratch directory.
fn setup(topics: &[(&str, i32)]) -> (tokio::runtime::Runtime, Broker, tempfile::TempDir) {
    let rt = rt();
    let broker = Broker::start();
    rt.block_on(async {
        for (t, p) in topics {
            broker.create_topic(t, *p).await;
        }
    });
    (rt, broker, tempfile::tempdir().unwrap())
}

#[test]
fn known_timestamps_give_exact_windows_and_a_restart_doubles_none() {
    let (rt, broker, dir) = setup(&[
        ("tweets", 2),
        ("scored", 2),
        ("scored.dlq", 1),
        ("opinion", 1),
    ]);
    // 10 s windows in the past, aligned; lateness 20 s (so the watermark trails the newest
    // record by two windows, and a quiet stream closes its windows after 30 s).
    let w: i64 = 10_000;
    let base = (streamscore::stream::now_ms() - 600_000) / w * w;
    let flags = [
        &SUBJECTS[..],
        &[
            "--summary-topic",
            "opinion",
            "--summary-window-ms",
            "10000",
            "--summary-lateness-ms",
            "20000",
        ],
    ]
    .concat();
    let pos = "I love it, wonderful day";
    let neg = "this is awful, I hate it";
    let acme_pos = "love my new #AcmePhone, wonderful";
    let tv_neg = "the tv show was awful, hate it";
    let mut d = start(&broker, dir.path(), "windows", &flags);
    // Window 0: 2 positive (1 acme), 1 negative (tv). Window 1: 1 acme positive.
    // Window 5 stays open at the stop: 1 negative, then 1 more positive after the restart.
    rt.block_on(produce_at(
        &broker,
        "tweets",
        &[
            (pos, base + 1_000),
            (acme_pos, base + 5_000),
            (tv_neg, base + 9_999),
            (acme_pos, base + w + 10),
            (neg, base + 5 * w + 500),
        ],
    ));
    // The record in window 5 moves the watermark past windows 0 to 2: 0 and 1 close.
    wait_until(
        Duration::from_secs(60),
        || d.log_text(),
        || {
            let (_, closed) = summaries(&broker, "opinion", 0);
            closed.contains_key(&format!("windows/*/{}", base + w))
        },
    );
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0), "{}", d.log_text());
    let mut d = start(&broker, dir.path(), "windows", &flags);
    // After the restart: one more in window 5, and a late one for window 0 (already emitted:
    // it must not change or re-emit it).
    rt.block_on(produce_at(
        &broker,
        "tweets",
        &[(pos, base + 5 * w + 2_000), (pos, base + 2_000)],
    ));
    // A quiet stream closes window 5 after window + lateness (30 s) of wall clock.
    let key5 = format!("windows/*/{}", base + 5 * w);
    wait_until(
        Duration::from_secs(90),
        || d.log_text(),
        || {
            let (last, _) = summaries(&broker, "opinion", 0);
            last.get(&key5).is_some_and(|v| v["closed"] == true)
        },
    );
    let (last, closed) = summaries(&broker, "opinion", 0);
    let get = |subject: &str, window: i64| {
        let key = format!("windows/{subject}/{}", base + window * w);
        let v = last
            .get(&key)
            .unwrap_or_else(|| panic!("no summary {key}: {last:?}"));
        assert_eq!(v["closed"], true, "{key}");
        assert_eq!(closed[&key], 1, "{key} closed once");
        counts(v)
    };
    assert_eq!(
        get("*", 0),
        (2, 1),
        "window 0: the late record changed nothing"
    );
    assert_eq!(get("acme", 0), (1, 0));
    assert_eq!(get("tv", 0), (0, 1));
    assert_eq!(get("*", 1), (1, 0));
    assert_eq!(get("acme", 1), (1, 0));
    assert_eq!(
        get("*", 5),
        (1, 1),
        "window 5 spans the restart: saved open, then closed"
    );
    assert!(
        !last.contains_key(&format!("windows/*/{}", base + 2 * w)),
        "an empty window is not written"
    );
    assert!(!last.contains_key(&format!("windows/tv/{}", base + w)));
    assert_eq!(d.metric_sum("streamscore_opinion_late_records"), 1.0);
    let v = last[&format!("windows/acme/{base}")].clone();
    assert_eq!(v["deployment"], "windows");
    assert_eq!(v["end_ms"], base + w);
    assert!((v["positive_share"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
}

/// Produces a steady stream of current tweets (some about each subject) until `stop`.
async fn stream_tweets(broker: &Broker, stop: tokio_util::sync::CancellationToken) -> usize {
    let texts = [
        "love my new #AcmePhone, wonderful",
        "@acme your support is awful, I hate waiting",
        "the tv show was great, loved it",
        "worst television night ever, awful",
        "what a wonderful day",
        "I hate mondays, awful",
    ];
    let p = broker.producer();
    let mut n = 0;
    while !stop.is_cancelled() {
        let value =
            serde_json::json!({"id": format!("s{n}"), "text": texts[n % texts.len()]}).to_string();
        let key = format!("s{n}");
        p.send(
            FutureRecord::to("tweets").key(&key).payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("test produce");
        n += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    n
}

/// How many distinct colours a PNG holds (sampled), and its size.
fn png_colours(bytes: &[u8]) -> (usize, u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(px).step_by(7).collect();
    (colours.len(), info.width, info.height)
}

#[test]
fn the_live_page_updates_without_reload_and_matches_the_summary_topic() {
    let (rt, broker, dir) = setup(&[
        ("tweets", 2),
        ("scored", 2),
        ("scored.dlq", 1),
        ("opinion", 1),
    ]);
    let config = auth_config(dir.path());
    let flags = [
        &SUBJECTS[..],
        &[
            "--summary-topic",
            "opinion",
            "--summary-window-ms",
            "2000",
            "--summary-lateness-ms",
            "500",
            "--config",
            &config,
        ],
    ]
    .concat();
    let d = start(&broker, dir.path(), "live", &flags);
    wait_until(
        Duration::from_secs(30),
        || d.log_text(),
        || http_address(&d.log_text()).is_some(),
    );
    let base = format!("http://{}", http_address(&d.log_text()).unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let (screenshot, shown) = rt.block_on(async {
        let b = browser::Browser::start(1200, 1100).await;
        b.goto(&format!("{base}/")).await;
        assert_eq!(b.run("return document.body.className").await, "login");
        b.run(&format!(
            "document.getElementById('user').value = {USER:?};
             document.getElementById('password').value = {PASSWORD:?};
             document.getElementById('login').submit();"
        ))
        .await;
        b.wait_for(Duration::from_secs(20), "the page after login",
            "return document.body && document.body.className === 'page'").await;
        b.wait_for(Duration::from_secs(30), "a first snapshot",
            "return Number(document.getElementById('opinion').dataset.updates) > 0").await;
        // Marks this document: a reload would lose it.
        b.run("window.__sameDocument = 42").await;
        let producer = {
            let stop = stop.clone();
            let broker = &broker;
            async move { stream_tweets(broker, stop).await }
        };
        let watch = async {
            let first = b.wait_for(Duration::from_secs(60), "closed windows on the page",
                "const rows = document.querySelectorAll('#windows tr[data-closed=true][data-subject=acme]');
                 return rows.length >= 2 ? Number(document.getElementById('chart').dataset.total) : 0").await;
            let updates = b.run("return Number(document.getElementById('opinion').dataset.updates)").await;
            // The chart keeps moving as tweets flow.
            b.wait_for(Duration::from_secs(30), "the chart to grow",
                &format!("return Number(document.getElementById('chart').dataset.total) > {first}")).await;
            let later = b.run("return Number(document.getElementById('opinion').dataset.updates)").await;
            assert!(later.as_u64() > updates.as_u64(), "updates arrived: {updates} → {later}");
            stop.cancel();
            assert_eq!(b.run("return window.__sameDocument").await, 42, "the page never reloaded");
            let shown = b.run(
                "return [...document.querySelectorAll('#windows tr[data-closed=true]')].map(r => ({
                    subject: r.dataset.subject, start: Number(r.dataset.start),
                    positive: Number(r.dataset.positive), negative: Number(r.dataset.negative)}))").await;
            let lines = b.run("return document.querySelectorAll('#chart polyline').length").await;
            assert!(lines.as_u64().unwrap() >= 2, "a line per subject with tweets: {lines}");
            let recent = b.run("return document.querySelectorAll('#recent-positive li').length + document.querySelectorAll('#recent-negative li').length").await;
            assert!(recent.as_u64().unwrap() >= 2, "recent tweets shown: {recent}");
            let status = b.run("return document.getElementById('status').textContent").await;
            assert_eq!(status, "RUNNING");
            shown
        };
        let (n, shown) = futures::join!(producer, watch);
        assert!(n > 0);
        let weight = b.run(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
               .map(e => e.name.replace(location.origin, '') + ' ' + e.transferSize + ' B')").await;
        eprintln!("page weight (transferred): {weight}");
        let png = b.screenshot().await;
        // On a phone-sized window nothing spills sideways (wide tables scroll in their box).
        b.set_window(390, 844).await;
        let fits = b.wait_for(Duration::from_secs(5), "the phone layout",
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 ? 'fits' : ''").await;
        assert_eq!(fits, "fits");
        b.quit().await;
        (png, shown)
    });
    // Every closed window the page showed is in the summary topic, with the same counts.
    let shown = shown.as_array().unwrap().clone();
    assert!(shown.len() >= 4, "closed rows shown: {shown:?}");
    let (last, _) = summaries(&broker, "opinion", shown.len());
    for row in &shown {
        let key = format!("live/{}/{}", row["subject"].as_str().unwrap(), row["start"]);
        let v = last
            .get(&key)
            .unwrap_or_else(|| panic!("page shows {key}, the topic does not: {last:?}"));
        assert_eq!(v["closed"], true);
        assert_eq!(
            (
                row["positive"].as_u64().unwrap(),
                row["negative"].as_u64().unwrap()
            ),
            counts(v),
            "{key}"
        );
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("opinion-page.png");
    std::fs::write(&out, &screenshot).unwrap();
    let (colours, width, height) = png_colours(&screenshot);
    assert!(width >= 1000 && height >= 800, "{width}x{height}");
    assert!(
        colours >= 20,
        "the screenshot is not blank: {colours} colours ({})",
        out.display()
    );
    eprintln!(
        "screenshot: {} ({} bytes, {colours} colours)",
        out.display(),
        screenshot.len()
    );
}

#[test]
fn the_page_and_its_stream_refuse_missing_or_forged_tokens() {
    let (rt, broker, dir) = setup(&[("tweets", 1), ("scored", 1), ("scored.dlq", 1)]);
    let config = auth_config(dir.path());
    let d = start(&broker, dir.path(), "guarded", &["--config", &config]);
    wait_until(
        Duration::from_secs(30),
        || d.log_text(),
        || http_address(&d.log_text()).is_some(),
    );
    let base = format!("http://{}", http_address(&d.log_text()).unwrap());
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let get = |path: &str, cookie: Option<&str>| {
            let mut r = http.get(format!("{base}{path}"));
            if let Some(c) = cookie {
                r = r.header("Cookie", format!("streamscore_session={c}"));
            }
            r.send()
        };
        // Another key's token, and garbage: both forged.
        let forged =
            streamscore::auth::Authenticator::new(vec![], Default::default(), b"not-the-key", 3600)
                .issue(USER);
        for cookie in [None, Some("garbage"), Some(forged.as_str())] {
            let page = get("/", cookie).await.unwrap();
            let csp = page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(csp.contains("default-src 'none'"), "{csp}");
            let body = page.text().await.unwrap();
            assert!(
                body.contains("id=\"login\"") && !body.contains("id=\"chart\""),
                "{cookie:?}: the login form, not the page"
            );
            for path in [
                "/opinion/deployments",
                "/opinion/stream/guarded",
                "/v3/wml_instances/x/published_models/y/deployments/guarded/opinion",
            ] {
                let r = get(path, cookie).await.unwrap();
                assert_eq!(r.status(), 401, "{path} with {cookie:?}");
            }
        }
        let forged_bearer = http
            .get(format!("{base}/opinion/deployments"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap();
        assert_eq!(forged_bearer.status(), 401);
        // A wrong password sets no cookie.
        let wrong = http
            .post(format!("{base}/login"))
            .form(&[("user", USER), ("password", "nope")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 303);
        assert!(wrong.headers().get("set-cookie").is_none());
        assert_eq!(wrong.headers()["location"], "/?failed=1");
        let ok = http
            .post(format!("{base}/login"))
            .form(&[("user", USER), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 303);
        let set = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let session = set
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("streamscore_session=")
            .to_owned();
        let page = get("/", Some(&session))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("id=\"chart\""));
        let list: Value = get("/opinion/deployments", Some(&session))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list[0]["id"], "guarded");
        let json = get(
            "/v3/wml_instances/x/published_models/y/deployments/guarded/opinion?windows=5",
            Some(&session),
        )
        .await
        .unwrap();
        assert_eq!(json.status(), 200);
        let too_many = get(
            "/v3/wml_instances/x/published_models/y/deployments/guarded/opinion?windows=99999",
            Some(&session),
        )
        .await
        .unwrap();
        assert_eq!(too_many.status(), 400);
        // The cookie is for reading only: it does not authorize a change.
        let create = http
            .post(format!(
                "{base}/v3/wml_instances/x/published_models/y/deployments"
            ))
            .header("Cookie", format!("streamscore_session={session}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(create.status(), 401);
        // Deployments created over the API take subjects and a summary topic, validated.
        let token: Value = http
            .get(format!("{base}/v2/identity/token"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = token["token"].as_str().unwrap().to_owned();
        let body = |subjects: Value| {
            let conn = serde_json::json!({"kafka_brokers_sasl": [broker.addr]});
            serde_json::json!({
                "name": format!("api-{}", subjects.to_string().len()), "type": "stream",
                "input": {"connection": conn, "source": {"topic": "tweets", "type": "kafka"}},
                "output": {"connection": conn, "target": {"topic": "scored", "type": "kafka"}},
                "subjects": subjects, "summary_topic": "tweets.opinion"
            })
        };
        let url = format!("{base}/v3/wml_instances/x/published_models/y/deployments");
        for (bad, why) in [
            (serde_json::json!({"a b": ["x"]}), "subject name"),
            (serde_json::json!({"acme": []}), "keywords"),
            (
                serde_json::json!({"acme": ["one two three four five"]}),
                "more than 4 words",
            ),
        ] {
            let r = http
                .post(&url)
                .bearer_auth(&bearer)
                .json(&body(bad))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let text = r.text().await.unwrap();
            assert!(text.contains("subjects") && text.contains(why), "{text}");
        }
        let r = http
            .post(&url)
            .bearer_auth(&bearer)
            .json(&body(
                serde_json::json!({"acme": ["acme", "#acmephone", "@acme"]}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["entity"]["subjects"]["acme"][2], "@acme");
        assert_eq!(created["entity"]["summary_topic"], "tweets.opinion");
        // The assets are public and come from the daemon itself.
        for asset in ["/assets/opinion.js", "/assets/opinion.css"] {
            let r = get(asset, None).await.unwrap();
            assert_eq!(r.status(), 200, "{asset}");
        }
    });
}
