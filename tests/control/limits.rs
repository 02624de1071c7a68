//! What a client without credentials, or an unlucky operator, can make the daemon do is
//! bounded: a flood of bad logins, too many or oversized deployments, duplicate names.

use super::*;
use std::net::{IpAddr, Ipv4Addr};

/// Peak resident memory (VmHWM) of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn a_flood_of_bad_logins_from_many_addresses_stays_bounded() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    let base = api.base.clone();
    let pid = api.child.id();
    let before = peak_rss_mb(pid);
    let statuses = rt.block_on(async {
        // 1,000 concurrent requests from 50 loopback addresses (127.0.0.10–59), 20 each.
        let tasks: Vec<_> = (0..1_000u32)
            .map(|i| {
                let base = base.clone();
                tokio::spawn(async move {
                    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (i % 50) as u8));
                    let c = reqwest::Client::builder()
                        .local_address(ip)
                        .build()
                        .unwrap();
                    c.get(format!("{base}/v2/identity/token"))
                        .basic_auth(USER, Some(format!("wrong {i}")))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut statuses = HashMap::<u16, usize>::new();
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_default() += 1;
        }
        statuses
    });
    let after = peak_rss_mb(pid);
    eprintln!("bad-login flood: {statuses:?}; peak RSS {before:.1} → {after:.1} MB");
    assert_eq!(statuses.get(&200), None, "{statuses:?}");
    assert_eq!(
        statuses.get(&0),
        None,
        "every request was answered: {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| [401, 429, 503].contains(s)),
        "refused as bad (401), rate-limited (429) or busy (503): {statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the password-check queue is bounded: {statuses:?}"
    );
    assert!(
        after - before < 64.0,
        "peak RSS grew {:.1} MB (from {before:.1})",
        after - before
    );
    // The right password still works (from an address without failures).
    rt.block_on(async { assert!(!bearer(&base).await.is_empty()) });
    api.stop();
}

#[test]
fn deployments_are_capped_named_once_and_bounded_in_size() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(
        dir.path(),
        &[("STREAMSCORE__CONTROL__MAX_DEPLOYMENTS", "2")],
    );
    let base = api.base.clone();
    rt.block_on(async {
        let tok = bearer(&base).await;
        let named = |name: &str| {
            let mut b = seed_body("127.0.0.1:9", "in", "out");
            b["name"] = json!(name);
            b
        };
        assert_eq!(create(&base, &tok, &named("one")).await.status(), 201);
        let r = create(&base, &tok, &named("one")).await;
        assert_eq!(r.status(), 409, "duplicate name");
        assert!(r.text().await.unwrap().contains("exists"));
        let r = create(&base, &tok, &named(&"x".repeat(129))).await;
        assert_eq!(r.status(), 400, "name too long");
        let mut long = named("described");
        long["description"] = json!("d".repeat(1025));
        assert_eq!(create(&base, &tok, &long).await.status(), 400);
        assert_eq!(create(&base, &tok, &named("two")).await.status(), 201);
        let r = create(&base, &tok, &named("three")).await;
        assert_eq!(r.status(), 409, "over control.max_deployments");
        assert!(r.text().await.unwrap().contains("max_deployments"));
        let list: Value = reqwest::Client::new()
            .get(format!("{base}{DEPLOYMENTS}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["count"], 2);
    });
    // Garbage on the control socket gets a JSON error line, and the connection goes on.
    use std::io::{BufRead, Write};
    let mut sock = std::os::unix::net::UnixStream::connect(&api.socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"\xff\xfe\x00garbage\nstatus one\n")
        .unwrap();
    let mut lines = std::io::BufReader::new(sock.try_clone().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["ok"], false, "{first}");
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["deployment"]["name"], "one", "{second}");
    api.stop();
}
