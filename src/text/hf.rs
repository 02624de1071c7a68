//! A Hugging Face `tokenizer.json` as a text pipeline, through the `tokenizers` crate.

use super::{Token, TokenSink};
use std::str::FromStr;
use tokenizers::Tokenizer;

/// A `tokenizer.json` that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid Hugging Face tokenizer: {0}")]
pub struct HfTokenizerError(String);

/// A Hugging Face tokenizer and the JSON it was built from (kept to write it into model files).
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    tokenizer: Tokenizer,
    json: String,
}

impl HfTokenizer {
    /// Builds a tokenizer from the text of a `tokenizer.json` file.
    pub fn from_json(json: &str) -> Result<Self, HfTokenizerError> {
        let tokenizer = Tokenizer::from_str(json).map_err(|e| HfTokenizerError(e.to_string()))?;
        Ok(HfTokenizer {
            tokenizer,
            json: json.to_owned(),
        })
    }

    /// The `tokenizer.json` text this tokenizer was built from.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Feeds the tokens of `text` (without special tokens) to `sink`. A text the tokenizer
    /// cannot encode yields no tokens: scoring must not fail on odd input.
    pub fn tokenize(&self, text: &str, sink: &mut impl TokenSink) {
        if let Ok(encoding) = self.tokenizer.encode(text, false) {
            for t in encoding.get_tokens() {
                sink.token(Token {
                    text: t,
                    negated: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Pipeline;

    /// A tiny WordLevel tokenizer with a lowercase normalizer and whitespace pre-tokenizer.
    pub(crate) const TINY: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": {"type": "Lowercase"},
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "good": 1, "bad": 2}, "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn tokenizes_through_the_tokenizers_crate() {
        let p = Pipeline::HuggingFace(Box::new(HfTokenizer::from_json(TINY).unwrap()));
        assert_eq!(p.tokens("Good BAD other"), ["good", "bad", "[UNK]"]);
    }

    #[test]
    fn refuses_invalid_json() {
        assert!(HfTokenizer::from_json("{\"not\": 1}").is_err());
    }
}
