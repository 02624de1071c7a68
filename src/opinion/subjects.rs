//! Subjects: named sets of keywords, hashtags or @mentions, matched on tokens.
//!
//! A tweet matches a subject when one of the subject's keywords appears in it as whole tokens
//! of the tweet tokenizer (case-folded; `#acme` reads as the word `acme`; an @mention stays
//! `@acme`, so `@acme` matches only the mention). A keyword of several words (`"acme phone"`)
//! matches those tokens in a row. Matching never looks at substrings: `acme` does not match
//! `acmeville`. Matching uses its own tokenizer settings, whatever the model's pipeline is.

use crate::text::{Token, TweetSettings, TweetTokenizer};
use std::collections::{BTreeMap, HashMap};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Most subjects per deployment (also bounds the metric labels they create).
pub const MAX_SUBJECTS: usize = 20;
/// Most keywords per subject.
pub const MAX_KEYWORDS: usize = 20;
/// Longest keyword, in bytes.
pub const MAX_KEYWORD_BYTES: usize = 64;
/// Most tokens in one keyword.
pub const MAX_KEYWORD_TOKENS: usize = 4;
/// Longest subject name, in bytes.
pub const MAX_SUBJECT_NAME_BYTES: usize = 32;
/// The pseudo-subject every scored tweet counts under (the whole stream).
pub const ALL: &str = "*";

/// Subjects as written in configuration or the API: name → keywords.
pub type SubjectsConfig = BTreeMap<String, Vec<String>>;

/// A subject definition that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Too many subjects.
    #[error("at most {MAX_SUBJECTS} subjects per deployment")]
    TooMany,
    /// A bad subject name.
    #[error("subject name {0:?}: must be 1 to {MAX_SUBJECT_NAME_BYTES} letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// A subject without keywords or with too many.
    #[error("subject {0:?}: must have 1 to {MAX_KEYWORDS} keywords")]
    KeywordCount(String),
    /// A keyword that cannot be matched.
    #[error("subject {subject:?}, keyword {keyword:?}: {why}")]
    BadKeyword {
        /// The subject.
        subject: String,
        /// The keyword.
        keyword: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Compiled subjects: matches a text against every keyword in one pass over its tokens.
#[derive(Debug, Clone)]
pub struct Subjects {
    names: Vec<String>,
    /// First token of each keyword → (subject index, the keyword's remaining tokens). Looked
    /// up once per token of every scored tweet: a fast non-cryptographic hash (the keys are
    /// the operator's keywords, not attacker-chosen).
    by_first: HashMap<String, Vec<(usize, Vec<String>)>, Xxh3DefaultBuilder>,
    tokenizer: TweetTokenizer,
}

/// Reusable buffers for [`Subjects::matches`]: keep one per thread.
#[derive(Debug, Default)]
pub struct MatchScratch {
    word: String,
    text: String,
    spans: Vec<(usize, usize)>,
}

fn tokenizer() -> TweetTokenizer {
    TweetTokenizer::new(TweetSettings {
        mark_elongation: false,
        negation_scope: 0,
        mentions: false,
        numbers: false,
        ..TweetSettings::default()
    })
}

/// Tokenizes `text` into `s.text` / `s.spans`, case-folded.
fn tokenize(t: &TweetTokenizer, text: &str, s: &mut MatchScratch) {
    s.text.clear();
    s.spans.clear();
    let (out, spans) = (&mut s.text, &mut s.spans);
    t.tokenize(text, &mut s.word, &mut |tok: Token<'_>| {
        let start = out.len();
        // Words are lowercased by the tokenizer; a kept @mention is not.
        if tok
            .text
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b >= 0x80)
        {
            out.extend(tok.text.chars().flat_map(char::to_lowercase));
        } else {
            out.push_str(tok.text);
        }
        spans.push((start, out.len()));
    });
}

impl Subjects {
    /// Checks and compiles subjects (the error names the subject and keyword).
    pub fn compile(config: &SubjectsConfig) -> Result<Subjects, SubjectError> {
        if config.len() > MAX_SUBJECTS {
            return Err(SubjectError::TooMany);
        }
        let tokenizer = tokenizer();
        let mut scratch = MatchScratch::default();
        let mut by_first: HashMap<String, Vec<(usize, Vec<String>)>, Xxh3DefaultBuilder> =
            HashMap::default();
        let mut names = Vec::with_capacity(config.len());
        for (index, (name, keywords)) in config.iter().enumerate() {
            let name_ok = !name.is_empty()
                && name.len() <= MAX_SUBJECT_NAME_BYTES
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return Err(SubjectError::BadName(name.clone()));
            }
            if keywords.is_empty() || keywords.len() > MAX_KEYWORDS {
                return Err(SubjectError::KeywordCount(name.clone()));
            }
            for keyword in keywords {
                let bad = |why| SubjectError::BadKeyword {
                    subject: name.clone(),
                    keyword: keyword.clone(),
                    why,
                };
                if keyword.len() > MAX_KEYWORD_BYTES {
                    return Err(bad("longer than 64 bytes"));
                }
                tokenize(&tokenizer, keyword, &mut scratch);
                let tokens: Vec<String> = scratch
                    .spans
                    .iter()
                    .map(|&(a, b)| scratch.text[a..b].to_owned())
                    .collect();
                let Some((first, rest)) = tokens.split_first() else {
                    return Err(bad("holds no word"));
                };
                if tokens.len() > MAX_KEYWORD_TOKENS {
                    return Err(bad("more than 4 words"));
                }
                by_first
                    .entry(first.clone())
                    .or_default()
                    .push((index, rest.to_vec()));
            }
            names.push(name.clone());
        }
        Ok(Subjects {
            names,
            by_first,
            tokenizer,
        })
    }

    /// Subject names, in index order (bit `i` of a match mask is `names()[i]`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether no subject is defined.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The subjects `text` mentions, as a bit mask over [`names`](Self::names).
    pub fn matches(&self, text: &str, s: &mut MatchScratch) -> u32 {
        if self.names.is_empty() {
            return 0;
        }
        tokenize(&self.tokenizer, text, s);
        let token = |i: usize| s.spans.get(i).map(|&(a, b)| &s.text[a..b]);
        let mut mask = 0u32;
        for i in 0..s.spans.len() {
            let Some(candidates) = token(i).and_then(|t| self.by_first.get(t)) else {
                continue;
            };
            for (subject, rest) in candidates {
                let whole = rest
                    .iter()
                    .enumerate()
                    .all(|(k, want)| token(i + 1 + k) == Some(want.as_str()));
                if whole {
                    mask |= 1 << subject;
                }
            }
        }
        mask
    }

    /// The names of the subjects in `mask`.
    pub fn names_in(&self, mask: u32) -> impl Iterator<Item = &str> + '_ {
        self.names
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(pairs: &[(&str, &[&str])]) -> Subjects {
        let config = pairs
            .iter()
            .map(|(n, k)| (n.to_string(), k.iter().map(|s| s.to_string()).collect()))
            .collect();
        Subjects::compile(&config).unwrap()
    }

    fn matched(s: &Subjects, text: &str) -> Vec<String> {
        let mask = s.matches(text, &mut MatchScratch::default());
        s.names_in(mask).map(str::to_owned).collect()
    }

    #[test]
    fn words_hashtags_and_case_match_whole_tokens_only() {
        let s = subjects(&[("acme", &["acme", "#acmephone"])]);
        assert_eq!(matched(&s, "I LOVE Acme!"), ["acme"]);
        assert_eq!(matched(&s, "new #Acme launch"), ["acme"]);
        assert_eq!(matched(&s, "my acmephone broke"), ["acme"]);
        assert_eq!(matched(&s, "#AcmePhone is great"), ["acme"]);
        assert!(matched(&s, "acmeville is far").is_empty(), "no substrings");
        assert!(matched(&s, "nothing here").is_empty());
    }

    #[test]
    fn mentions_match_only_mentions() {
        let s = subjects(&[("acme", &["@acme"])]);
        assert_eq!(matched(&s, "thanks @ACME for nothing"), ["acme"]);
        assert!(matched(&s, "acme is fine").is_empty());
        assert!(matched(&s, "#acme trending").is_empty());
        let w = subjects(&[("acme", &["acme"])]);
        assert!(
            matched(&w, "@acme hi").is_empty(),
            "a word is not a mention"
        );
    }

    #[test]
    fn negation_scope_does_not_matter_and_phrases_match_in_a_row() {
        let s = subjects(&[("phone", &["acme phone"]), ("tv", &["tv"])]);
        assert_eq!(matched(&s, "I do not like the acme phone"), ["phone"]);
        assert_eq!(matched(&s, "never buying a TV"), ["tv"]);
        assert!(matched(&s, "acme makes a phone").is_empty());
        assert_eq!(matched(&s, "ACME Phone and tv"), ["phone", "tv"]);
    }

    #[test]
    fn bad_definitions_are_refused_by_name() {
        let config = |n: &str, k: &[&str]| -> SubjectsConfig {
            [(n.to_string(), k.iter().map(|s| s.to_string()).collect())].into()
        };
        assert_eq!(
            Subjects::compile(&config("a b", &["x"])).unwrap_err(),
            SubjectError::BadName("a b".into())
        );
        assert!(matches!(
            Subjects::compile(&config("a", &[])),
            Err(SubjectError::KeywordCount(_))
        ));
        let err = Subjects::compile(&config("a", &["   "])).unwrap_err();
        assert!(err.to_string().contains("holds no word"), "{err}");
        let err = Subjects::compile(&config("a", &["one two three four five"])).unwrap_err();
        assert!(err.to_string().contains("more than 4 words"), "{err}");
        let many: SubjectsConfig = (0..=MAX_SUBJECTS)
            .map(|i| (format!("s{i}"), vec!["x".to_string()]))
            .collect();
        assert_eq!(Subjects::compile(&many).unwrap_err(), SubjectError::TooMany);
    }
}
