//! Input records: finding the tweet text (and id) in a record's bytes.
//!
//! Accepted shapes (SPEC §1): a JSON object with the text under a configurable field (default
//! `text`, with `full_text` as a fallback), the Twitter v1 shape `{"id_str", "text"}`, the v2
//! shape `{"data": {"id", "text"}}`, or plain UTF-8 text.

use serde_json::Value;

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
    /// Parses one record.
    pub fn parse(&self, bytes: &[u8]) -> Result<ParsedInput, InputError> {
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
            ParsedInput {
                id: None,
                text: s.to_owned(),
            }
        };
        if parsed.text.trim().is_empty() {
            return Err(InputError::EmptyText);
        }
        Ok(parsed)
    }

    fn parse_json(&self, s: &str) -> Result<ParsedInput, InputError> {
        let v: Value =
            serde_json::from_str(s).map_err(|e| InputError::InvalidJson(e.to_string()))?;
        let Value::Object(obj) = v else {
            return Err(InputError::InvalidJson("not a JSON object".into()));
        };
        let id_of = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let text_of = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let data = obj.get("data").and_then(Value::as_object);
        let text = text_of(obj.get(&self.text_field))
            .or_else(|| text_of(obj.get("full_text")))
            .or_else(|| data.and_then(|d| text_of(d.get("text"))))
            .ok_or_else(|| InputError::MissingText(self.text_field.clone()))?;
        let id = id_of(obj.get("id_str"))
            .or_else(|| id_of(obj.get("id")))
            .or_else(|| data.and_then(|d| id_of(d.get("id"))));
        Ok(ParsedInput { id, text })
    }
}

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
