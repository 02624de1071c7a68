//! The seed's connection mode: `user`/`password` in the deployment, so SASL (PLAIN) over TLS.
//!
//! tansu (the wheel's 0.6, memory or S3 storage) keeps no SASL users: its storage drops SCRAM
//! credentials, and with `--authentication` it refuses every login. So this test can show the
//! refusal path only: TLS through a proxy the deployment trusts (a CA in `control.kafka`), a
//! login the broker refuses, and a FAILED deployment whose reason says so.

use crate::harness::Broker;
use crate::{bearer, create, seed_body, upload, wait_status, Api, ACCESS_KEY, MODEL};
use serde_json::Value;

#[test]
fn a_refused_sasl_login_over_tls_fails_the_deployment_and_says_so() {
    let rt = crate::rt();
    let broker = Broker::start_tls(true);
    let dir = tempfile::tempdir().unwrap();
    let ca = broker.tls.as_ref().unwrap().ca.display().to_string();
    let api = Api::start_with(dir.path(), &[], &[("ssl.ca.location", &ca)]);
    let base = api.base.clone();
    rt.block_on(async {
        let model = std::fs::read(MODEL).unwrap();
        let v = upload(&base, "sentiment", ACCESS_KEY, "sentiment.model", model).await;
        assert_eq!(v["flag"], true, "{v}");
        let tok = bearer(&base).await;
        let mut body = seed_body(&broker.addr, "in", "out");
        for side in ["input", "output"] {
            body[side]["connection"]["user"] = "alice".into();
            body[side]["connection"]["password"] = "not her password".into();
        }
        let r = create(&base, &tok, &body).await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = wait_status(&base, &tok, &id, "FAILED").await;
        let reason = v["entity"]["status_details"]["reason"]
            .as_str()
            .unwrap_or_default();
        eprintln!("FAILED reason: {reason}");
        assert!(
            reason.contains("SASL authentication failed"),
            "{v}\nlog:\n{}",
            api.log_text()
        );
        assert!(
            !api.log_text().contains("not her password") && !v.to_string().contains("not her"),
            "the password is never shown"
        );
    });
    api.stop();
}
