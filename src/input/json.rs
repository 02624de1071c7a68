//! A JSON tweet read in one pass, without building a JSON tree: only the text and id fields
//! are kept (borrowed from the record when they hold no escapes); every other value is skipped.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The fields a tweet may carry its text and id in.
#[derive(Debug, Default)]
pub(super) struct TweetFields<'a> {
    pub text: Option<Cow<'a, str>>,
    pub full_text: Option<Cow<'a, str>>,
    pub id_str: Option<Cow<'a, str>>,
    pub id: Option<Cow<'a, str>>,
    pub data_text: Option<Cow<'a, str>>,
    pub data_id: Option<Cow<'a, str>>,
}

/// Reads a top-level object, looking for `text_field`, `full_text`, `id_str`, `id` and
/// `data.{id,text}`. Anything but an object is an error.
pub(super) struct TweetSeed<'f> {
    pub text_field: &'f str,
}

impl<'de> DeserializeSeed<'de> for TweetSeed<'_> {
    type Value = TweetFields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TweetSeed<'_> {
    type Value = TweetFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = TweetFields::default();
        while let Some(Key(key)) = map.next_key()? {
            let key = key.as_ref();
            let wanted = key == self.text_field || matches!(key, "full_text" | "id_str" | "id");
            if key == "data" && self.text_field != "data" {
                let Data { id, text } = map.next_value()?;
                (out.data_id, out.data_text) = (id, text);
            } else if wanted {
                let Scalar(value) = map.next_value()?;
                if key == self.text_field {
                    out.text = value.as_ref().filter(|v| v.is_text).map(|v| v.s.clone());
                }
                match key {
                    "full_text" => out.full_text = value.filter(|v| v.is_text).map(|v| v.s),
                    "id_str" => out.id_str = value.map(|v| v.s),
                    "id" => out.id = value.map(|v| v.s),
                    _ => {}
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A string or number value as a string (`is_text` only for strings); `None` for any other
/// JSON value, which is skipped.
struct Scalar<'a>(Option<ScalarValue<'a>>);

struct ScalarValue<'a> {
    s: Cow<'a, str>,
    is_text: bool,
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl ScalarVisitor {
    fn number<'a>(s: String) -> Option<ScalarValue<'a>> {
        Some(ScalarValue {
            s: Cow::Owned(s),
            is_text: false,
        })
    }
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<ScalarValue<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(ScalarValue {
            s: Cow::Borrowed(v),
            is_text: true,
        }))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(ScalarValue {
            s: Cow::Owned(v.to_owned()),
            is_text: true,
        }))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::number(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Self::number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).and_then(|n| Self::number(n.to_string())))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// The Twitter v2 `data` object's id and text; any other value gives neither.
#[derive(Default)]
struct Data<'a> {
    id: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
}

impl<'de> serde::Deserialize<'de> for Data<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Data::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "id" => out.id = map.next_value::<Scalar>()?.0.map(|v| v.s),
                "text" => {
                    out.text = map
                        .next_value::<Scalar>()?
                        .0
                        .filter(|v| v.is_text)
                        .map(|v| v.s)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Data::default())
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Data::default())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Data::default())
    }
}

#[cfg(test)]
mod tests {
    use crate::input::InputSpec;
    use std::borrow::Cow;

    #[test]
    fn borrows_unescaped_text_and_skips_other_values() {
        let spec = InputSpec::default();
        let rec = br#"{"user": {"a": [1, {"b": null}]}, "text": "plain", "id": 12, "x": 1.5}"#;
        let p = spec.parse_borrowed(rec).unwrap();
        assert!(matches!(p.text, Cow::Borrowed("plain")));
        assert_eq!(p.id.as_deref(), Some("12"));
        let p = spec.parse_borrowed(br#"{"text": "a\nb\u00e9"}"#).unwrap();
        assert_eq!(p.text, "a\nb\u{e9}");
    }

    #[test]
    fn non_string_text_falls_back_like_a_json_tree_would() {
        let spec = InputSpec::default();
        let p = spec
            .parse_borrowed(br#"{"text": 5, "full_text": "ft", "data": "x"}"#)
            .unwrap();
        assert_eq!(p.text, "ft");
        let p = spec
            .parse_borrowed(br#"{"text": null, "data": {"text": "v2", "id": 3.5}}"#)
            .unwrap();
        assert_eq!((p.text.as_ref(), p.id.as_deref()), ("v2", Some("3.5")));
        assert_eq!(
            spec.parse_borrowed(br#"{"text": "a"} trailing"#)
                .unwrap_err()
                .code(),
            "invalid_json"
        );
        let json = InputSpec {
            format: crate::input::InputFormat::Json,
            ..InputSpec::default()
        };
        assert_eq!(
            json.parse_borrowed(b"[1, 2]").unwrap_err().code(),
            "invalid_json"
        );
    }
}
