//! Input records: finding the tweet text (and id) in a record's bytes.
//!
//! Accepted shapes (SPEC §1): a JSON object with the text under a configurable field (default
//! `text`, with `full_text` as a fallback), the Twitter v1 shape `{"id_str", "text"}`, the v2
//! shape `{"data": {"id", "text"}}`, or plain UTF-8 text.

use std::borrow::Cow;

/// How record bytes are read.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// A JSON object carrying the text.
    Json,
    /// The whole record is the text.
    Text,
    /// JSON when it starts with `{`, plain text otherwise.
    #[default]
    Auto,
}

/// Why a record cannot be scored. The variants are the dead-letter reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The bytes are not UTF-8.
    #[error("record is not valid UTF-8")]
    NotUtf8,
    /// The JSON does not parse, or is not an object.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// No text under the expected field.
    #[error("no text field {0:?} (nor full_text, nor data.text)")]
    MissingText(String),
    /// The text is empty or only whitespace.
    #[error("text is empty")]
    EmptyText,
    /// The record has no value (a tombstone).
    #[error("record has no value (a tombstone)")]
    NullValue,
    /// The record is larger than the limit.
    #[error("record is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Record size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl InputError {
    /// A short, fixed reason code (for metrics labels and dead-letter headers).
    pub fn code(&self) -> &'static str {
        match self {
            InputError::NotUtf8 => "not_utf8",
            InputError::InvalidJson(_) => "invalid_json",
            InputError::MissingText(_) => "missing_text",
            InputError::EmptyText => "empty_text",
            InputError::NullValue => "null_value",
            InputError::TooLarge { .. } => "too_large",
        }
    }
}

/// A record's text and, when it has one, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedInput {
    /// The id from the record (`id`, `id_str`, or `data.id`), as a string.
    pub id: Option<String>,
    /// The text to score.
    pub text: String,
}

/// How to read records.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Record format.
    pub format: InputFormat,
    /// JSON field holding the text.
    pub text_field: String,
    /// Largest record accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            format: InputFormat::Auto,
            text_field: "text".into(),
            max_bytes: 1 << 20,
        }
    }
}

impl InputSpec {
    /// Parses one record into owned strings.
    pub fn parse(&self, bytes: &[u8]) -> Result<ParsedInput, InputError> {
        let p = self.parse_borrowed(bytes)?;
        Ok(ParsedInput {
            id: p.id.map(Cow::into_owned),
            text: p.text.into_owned(),
        })
    }

    /// Parses one record, borrowing the text and id from `bytes` where JSON escapes allow:
    /// no JSON tree is built, and fields other than the text and id are skipped unparsed.
    pub fn parse_borrowed<'a>(&self, bytes: &'a [u8]) -> Result<Parsed<'a>, InputError> {
        if bytes.len() > self.max_bytes {
            return Err(InputError::TooLarge {
                size: bytes.len(),
                limit: self.max_bytes,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| InputError::NotUtf8)?;
        let json = match self.format {
            InputFormat::Json => true,
            InputFormat::Text => false,
            InputFormat::Auto => s.trim_start().starts_with('{'),
        };
        let parsed = if json {
            self.parse_json(s)?
        } else {
            Parsed {
                id: None,
                text: Cow::Borrowed(s),
            }
        };
        if parsed.text.trim().is_empty() {
            return Err(InputError::EmptyText);
        }
        Ok(parsed)
    }

    fn parse_json<'a>(&self, s: &'a str) -> Result<Parsed<'a>, InputError> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_str(s);
        let fields = json::TweetSeed {
            text_field: &self.text_field,
        }
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| InputError::InvalidJson(e.to_string()))?;
        let text = fields
            .text
            .or(fields.full_text)
            .or(fields.data_text)
            .ok_or_else(|| InputError::MissingText(self.text_field.clone()))?;
        let id = fields.id_str.or(fields.id).or(fields.data_id);
        Ok(Parsed { id, text })
    }
}

/// A record's text and id, borrowed from the record where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The id from the record (`id_str`, `id`, or `data.id`), as a string.
    pub id: Option<Cow<'a, str>>,
    /// The text to score.
    pub text: Cow<'a, str>,
}

mod json;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &str) -> Result<ParsedInput, InputError> {
        InputSpec::default().parse(b.as_bytes())
    }

    #[test]
    fn accepts_every_documented_shape() {
        let p = parse(r#"{"id": 7, "text": "hi"}"#).unwrap();
        assert_eq!((p.id.as_deref(), p.text.as_str()), (Some("7"), "hi"));
        let p = parse(r#"{"id": 1, "id_str": "1204", "full_text": "long"}"#).unwrap();
        assert_eq!((p.id.as_deref(), p.text.as_str()), (Some("1204"), "long"));
        let p = parse(r#"{"data": {"id": "9", "text": "v2"}}"#).unwrap();
        assert_eq!((p.id.as_deref(), p.text.as_str()), (Some("9"), "v2"));
        let p = parse("plain tweet").unwrap();
        assert_eq!((p.id, p.text.as_str()), (None, "plain tweet"));
        let spec = InputSpec {
            text_field: "body".into(),
            ..InputSpec::default()
        };
        assert_eq!(spec.parse(br#"{"body": "custom"}"#).unwrap().text, "custom");
    }

    #[test]
    fn names_each_bad_record_kind() {
        assert_eq!(
            InputSpec::default().parse(&[0xff, 0xfe]).unwrap_err(),
            InputError::NotUtf8
        );
        assert_eq!(parse("{oops").unwrap_err().code(), "invalid_json");
        assert_eq!(parse(r#"{"nope": 1}"#).unwrap_err().code(), "missing_text");
        assert_eq!(
            parse(r#"{"text": "  "}"#).unwrap_err(),
            InputError::EmptyText
        );
        assert_eq!(parse("").unwrap_err(), InputError::EmptyText);
        let spec = InputSpec {
            max_bytes: 4,
            ..InputSpec::default()
        };
        assert_eq!(spec.parse(b"12345").unwrap_err().code(), "too_large");
        let json_only = InputSpec {
            format: InputFormat::Json,
            ..InputSpec::default()
        };
        assert_eq!(
            json_only.parse(b"plain").unwrap_err().code(),
            "invalid_json"
        );
        let text_only = InputSpec {
            format: InputFormat::Text,
            ..InputSpec::default()
        };
        assert_eq!(
            text_only.parse(b"{\"text\":1}").unwrap().text,
            "{\"text\":1}"
        );
    }
}
