//! Scoring never panics and always returns a valid prediction, whatever UTF-8 it is given.

use proptest::prelude::*;
use std::sync::OnceLock;
use streamscore::model::{Model, Scratch};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/sentiment-en.model"
        )))
        .expect("shipped model loads")
    })
}

fn check(text: &str) {
    let p = model().score(text);
    assert!(
        p.probability.is_finite() && (0.5..=1.0).contains(&p.probability),
        "{p:?} for {text:?}"
    );
    let batch = model().score_batch(&[text, text]);
    assert_eq!(batch, vec![p, p]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_string(s in any::<String>()) {
        check(&s);
    }

    #[test]
    fn tweet_like_strings(s in r"[ a-zA-Z@#:;()<3&!?.'’\u{2026}\u{1F600}-\u{1F64F}\u{FE0F}\u{1F3FB}-\u{1F3FF}]{0,200}") {
        check(&s);
    }

    #[test]
    fn only_emoji(s in r"[\u{1F300}-\u{1FAFF}\u{2600}-\u{27BF}\u{200D}\u{FE0F}]{1,100}") {
        check(&s);
    }

    #[test]
    fn only_punctuation(s in r"[!-/:-@\[-`{-~]{1,300}") {
        check(&s);
    }

    #[test]
    fn control_characters(s in r"[\x00-\x1F\x7F\u{80}-\u{9F}\u{200B}-\u{200F}\u{2028}\u{2029}]{1,100}") {
        check(&s);
    }
}

#[test]
fn edge_cases() {
    check("");
    check(" ");
    check("\u{0}");
    check("http://");
    check("@");
    check("#");
    check("&lt;");
    check("'''");
    check("İstanbul ǅ ß ﬁ"); // characters whose lowercase form is longer
}

#[test]
fn one_megabyte_inputs() {
    let words = "good bad not "
        .repeat(1 << 20)
        .chars()
        .take(1 << 20)
        .collect::<String>();
    check(&words);
    check(&"a".repeat(1 << 20));
    check(&"😂".repeat(1 << 18));
    check(&"!".repeat(1 << 20));
    check(&"http://x".repeat(1 << 17));
    // Scoring reuses scratch space across very different inputs.
    let mut scratch = Scratch::default();
    let big = model().score_with(&words, &mut scratch);
    let small = model().score_with("good", &mut scratch);
    assert_eq!(small, model().score("good"));
    assert_eq!(big, model().score(&words));
}
