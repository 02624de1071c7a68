//! Text processing: turning a raw tweet into the tokens the classifier hashes.
//!
//! Two pipelines exist, and a model file records which one it was trained with (and all of its
//! settings), so a model scores the same text the same way everywhere:
//!
//! - [`TweetTokenizer`]: the hand-written, tweet-aware fast path (URLs, @mentions, #hashtags,
//!   emoticons and emoji, elongated words, negation scope, repeated punctuation). It allocates
//!   nothing per token and is what the shipped model uses.
//! - [`HfTokenizer`]: any Hugging Face `tokenizer.json` (WordPiece, BPE, …), run through the
//!   `tokenizers` crate. Slower, but it lets a user bring the exact text pipeline of another tool.

mod hf;
mod tweet;

pub use hf::{HfTokenizer, HfTokenizerError};
pub use tweet::{TweetSettings, TweetTokenizer, TWEET_REVISION};

use serde::{Deserialize, Serialize};

/// A token handed to a [`TokenSink`]: its normalized text and whether it sits in a negation scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// Normalized token text (lowercased, elongation squashed, special forms like `<url>`).
    pub text: &'a str,
    /// True when the token follows a negation word within the negation scope.
    pub negated: bool,
}

/// Receives tokens as a pipeline produces them, without collecting them first.
pub trait TokenSink {
    /// Called once per token, in order.
    fn token(&mut self, token: Token<'_>);
}

impl<F: FnMut(Token<'_>)> TokenSink for F {
    fn token(&mut self, token: Token<'_>) {
        self(token)
    }
}

/// The serialized description of a text pipeline, as stored in a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PipelineSpec {
    /// The built-in tweet tokenizer with these settings.
    Tweet(TweetSettings),
    /// A Hugging Face tokenizer, kept as its `tokenizer.json` text.
    HuggingFace {
        /// The full `tokenizer.json` document.
        tokenizer_json: String,
    },
}

/// A ready-to-run text pipeline built from a [`PipelineSpec`].
#[derive(Debug, Clone)]
pub enum Pipeline {
    /// The built-in tweet tokenizer.
    Tweet(TweetTokenizer),
    /// A Hugging Face tokenizer.
    HuggingFace(Box<HfTokenizer>),
}

impl Pipeline {
    /// Builds the pipeline a spec describes.
    pub fn from_spec(spec: &PipelineSpec) -> Result<Self, HfTokenizerError> {
        Ok(match spec {
            PipelineSpec::Tweet(settings) => Pipeline::Tweet(TweetTokenizer::new(settings.clone())),
            PipelineSpec::HuggingFace { tokenizer_json } => {
                Pipeline::HuggingFace(Box::new(HfTokenizer::from_json(tokenizer_json)?))
            }
        })
    }

    /// The spec that rebuilds this pipeline.
    pub fn spec(&self) -> PipelineSpec {
        match self {
            Pipeline::Tweet(t) => PipelineSpec::Tweet(t.settings().clone()),
            Pipeline::HuggingFace(t) => PipelineSpec::HuggingFace {
                tokenizer_json: t.json().to_owned(),
            },
        }
    }

    /// Runs the pipeline over `text`, feeding every token to `sink`. `scratch` is a reusable
    /// buffer so that the fast path allocates nothing per call once it has warmed up.
    pub fn tokenize(&self, text: &str, scratch: &mut String, sink: &mut impl TokenSink) {
        match self {
            Pipeline::Tweet(t) => t.tokenize(text, scratch, sink),
            Pipeline::HuggingFace(t) => t.tokenize(text, sink),
        }
    }

    /// Convenience for tests and debugging: the tokens of `text` as strings, negated ones
    /// suffixed with `_NEG`.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut scratch = String::new();
        self.tokenize(text, &mut scratch, &mut |t: Token<'_>| {
            out.push(if t.negated {
                format!("{}_NEG", t.text)
            } else {
                t.text.to_owned()
            })
        });
        out
    }
}
