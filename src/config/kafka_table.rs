//! A pass-through table of librdkafka settings, whose secrets never print.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

/// librdkafka settings passed through as written (`kafka`, `input.kafka`, `output.kafka`,
/// `control.kafka`, `--kafka`). librdkafka needs the values as plain strings, so they are kept
/// as such; `Debug` (and so any log or error that formats a configuration) shows the values of
/// secret keys as `********`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaTable(BTreeMap<String, String>);

/// Whether the value of librdkafka key `key` is a secret: passwords, private keys, client
/// secrets and JAAS-style configurations.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "private",
        "jaas",
        "ssl.key.pem",
        "keystore",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl std::fmt::Debug for KafkaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_key(k) { "********" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

impl Deref for KafkaTable {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for KafkaTable {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a KafkaTable {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for KafkaTable {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        KafkaTable(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_print() {
        let t: KafkaTable = [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "k3y"),
            ("sasl.oauthbearer.client.secret", "s3cr3t"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.username", "alice"),
            ("linger.ms", "5"),
        ]
        .into_iter()
        .collect();
        let shown = format!("{t:?}");
        for secret in ["hunter2", "k3y", "s3cr3t", "BEGIN PRIVATE"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("alice") && shown.contains("\"linger.ms\": \"5\""));
        assert_eq!(t.get("sasl.password").map(String::as_str), Some("hunter2"));
        let toml: KafkaTable = serde_json::from_str(r#"{"a": "1"}"#).unwrap();
        assert_eq!(toml.len(), 1, "deserializes as a plain table");
    }
}
