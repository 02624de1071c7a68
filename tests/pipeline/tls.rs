//! The data plane over TLS: tansu behind a TLS-terminating proxy (stunnel), the proxy's
//! certificate signed by a CA the test makes and the deployment trusts through
//! `ssl.ca.location`.

use crate::harness::{self, tweets, wait_until, Broker, Daemon, DaemonArgs};
use crate::{args, coverage, input_offsets, wait_for_outputs, N, PARTITIONS};
use std::time::Duration;

#[test]
fn a_deployment_over_tls_scores_everything_and_an_untrusted_certificate_fails_it_and_says_so() {
    let broker = Broker::start_tls(false);
    let rt = harness::rt();
    let n = N / 10;
    rt.block_on(async {
        for t in ["in", "out", "out.dlq"] {
            broker.create_topic(t, PARTITIONS).await;
        }
        broker.produce("in", &tweets(n)).await;
    });
    let inputs = input_offsets(&broker, n);
    let dir = tempfile::tempdir().unwrap();
    let ca = format!(
        "ssl.ca.location={}",
        broker.tls.as_ref().unwrap().ca.display()
    );
    let mut d = Daemon::start(&DaemonArgs {
        extra: &["--kafka", "security.protocol=SSL", "--kafka", &ca],
        ..args(&broker, "a", dir.path())
    });
    wait_for_outputs(&broker, n, &d);
    let c = coverage(&broker, &inputs, Duration::from_secs(1));
    assert_eq!(c.missing, 0, "log:\n{}", d.log_text());
    d.signal("-TERM");
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));

    // The same deployment without the CA: the system's trust store does not know it.
    let untrusted = Daemon::start(&DaemonArgs {
        extra: &["--kafka", "security.protocol=SSL"],
        ..args(&broker, "b", dir.path())
    });
    let status = || crate::faults::ctl_status(dir.path(), "b");
    wait_until(
        Duration::from_secs(60),
        || format!("status: {}\nlog:\n{}", status(), untrusted.log_text()),
        || {
            let s = status();
            s.contains("FAILED") && s.contains("TLS handshake failed")
        },
    );
}
