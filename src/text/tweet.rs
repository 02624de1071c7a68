//! The hand-written, tweet-aware tokenizer: the fast path every shipped model uses.
//!
//! One left-to-right pass over the UTF-8 bytes, ASCII handled byte by byte and anything else
//! decoded as a `char`. Each token is written into a caller-owned scratch buffer and handed to a
//! [`TokenSink`], so scoring allocates nothing per token.

use super::{Token, TokenSink};
use serde::{Deserialize, Serialize};

/// Settings of the tweet tokenizer; stored in the model file so scoring matches training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TweetSettings {
    /// Algorithm revision. A model records it so a later change to the rules cannot silently
    /// alter how an old model sees text.
    pub revision: u32,
    /// Lowercase letters (Unicode-aware).
    pub lowercase: bool,
    /// Longest run of one repeated character kept inside a word ("sooooo" → "soo" at 2).
    pub max_repeat: u8,
    /// Emit an extra `<elong>` token after a word that was shortened by `max_repeat`.
    pub mark_elongation: bool,
    /// How many words after a negator ("not", "never", "don't", …) are marked negated. The scope
    /// also ends at clause punctuation (`. , ; : ! ?`). 0 turns negation marking off.
    pub negation_scope: u8,
    /// Replace URLs with `<url>`.
    pub urls: bool,
    /// Replace @mentions with `<user>`.
    pub mentions: bool,
    /// Replace numbers made only of digits with `<num>`.
    pub numbers: bool,
}

/// Current tokenizer revision written into new models.
pub const TWEET_REVISION: u32 = 1;

impl Default for TweetSettings {
    fn default() -> Self {
        TweetSettings {
            revision: TWEET_REVISION,
            lowercase: true,
            max_repeat: 2,
            mark_elongation: true,
            negation_scope: 3,
            urls: true,
            mentions: true,
            numbers: true,
        }
    }
}

/// Emoticons recognised at a token start, longest first within each prefix, with the class
/// token each one becomes. Matched on the original bytes, so `:D` and `:d` differ.
const EMOTICONS: &[(&str, &str)] = &[
    ("&lt;3", "<heart>"),
    ("&lt;/3", "<sadface>"),
    ("</3", "<sadface>"),
    ("<3", "<heart>"),
    (":-)", "<smile>"),
    (":o)", "<smile>"),
    (":')", "<smile>"),
    (": )", "<smile>"),
    (":)", "<smile>"),
    (":]", "<smile>"),
    (":}", "<smile>"),
    ("=)", "<smile>"),
    ("(:", "<smile>"),
    ("^_^", "<smile>"),
    ("^^", "<smile>"),
    (":-D", "<lolface>"),
    (":D", "<lolface>"),
    ("=D", "<lolface>"),
    (";D", "<lolface>"),
    ("xD", "<lolface>"),
    ("XD", "<lolface>"),
    (";-)", "<wink>"),
    (";)", "<wink>"),
    (";]", "<wink>"),
    (":-P", "<tongue>"),
    (":-p", "<tongue>"),
    (":P", "<tongue>"),
    (":p", "<tongue>"),
    (";P", "<tongue>"),
    (";p", "<tongue>"),
    (":'(", "<sadface>"),
    (":,(", "<sadface>"),
    (":-(", "<sadface>"),
    (":(", "<sadface>"),
    (":[", "<sadface>"),
    ("=(", "<sadface>"),
    (";(", "<sadface>"),
    ("):", "<sadface>"),
    ("D:", "<sadface>"),
    (":-/", "<neutralface>"),
    (":/", "<neutralface>"),
    (":\\", "<neutralface>"),
    (":|", "<neutralface>"),
    (":-|", "<neutralface>"),
];

/// The tweet tokenizer. Cheap to clone; holds only its settings.
#[derive(Debug, Clone)]
pub struct TweetTokenizer {
    settings: TweetSettings,
}

/// Per-call state: the negation scope still open.
struct Scope<'s, S: TokenSink> {
    sink: &'s mut S,
    negation_left: u8,
    negation_scope: u8,
}

impl<S: TokenSink> Scope<'_, S> {
    /// Emits a token that is not a word (never negated, never opens a scope).
    fn symbol(&mut self, text: &str) {
        self.sink.token(Token {
            text,
            negated: false,
        });
    }

    /// Emits a word, marking it negated while a scope is open, and opens a scope after a negator.
    fn word(&mut self, text: &str) {
        let negated = self.negation_left > 0;
        self.negation_left = self.negation_left.saturating_sub(1);
        self.sink.token(Token { text, negated });
        if self.negation_scope > 0 && is_negator(text) {
            self.negation_left = self.negation_scope;
        }
    }

    /// Clause punctuation closes any open negation scope.
    fn close_scope(&mut self) {
        self.negation_left = 0;
    }
}

impl TweetTokenizer {
    /// A tokenizer with the given settings.
    pub fn new(settings: TweetSettings) -> Self {
        TweetTokenizer { settings }
    }

    /// The settings this tokenizer runs with.
    pub fn settings(&self) -> &TweetSettings {
        &self.settings
    }

    /// Splits `text` into tokens and feeds them to `sink`; `buf` is scratch space for the
    /// normalized form of the current word.
    pub fn tokenize(&self, text: &str, buf: &mut String, sink: &mut impl TokenSink) {
        let s = &self.settings;
        let bytes = text.as_bytes();
        let mut scope = Scope {
            sink,
            negation_left: 0,
            negation_scope: s.negation_scope,
        };
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            // Most tokens are plain words: skip the special-form checks for letters that cannot
            // start a URL ("http", "www") or a face ("xD", "D:").
            if b.is_ascii_alphanumeric()
                && !matches!(b, b'h' | b'H' | b'w' | b'W' | b'x' | b'X' | b'D')
            {
                i = self.read_word(text, i, buf, &mut scope);
                continue;
            }
            let rest = &bytes[i..];
            if s.urls && starts_url(rest) {
                i = skip_non_space(bytes, i);
                scope.symbol("<url>");
                continue;
            }
            if b == b'@' && rest.get(1).is_some_and(|&c| is_handle_byte(c)) {
                let end = i + 1 + rest[1..].iter().take_while(|&&c| is_handle_byte(c)).count();
                if s.mentions {
                    scope.symbol("<user>");
                } else {
                    scope.word(&text[i..end]);
                }
                i = end;
                continue;
            }
            if let Some((len, class)) = match_emoticon(rest) {
                scope.symbol(class);
                i += len;
                continue;
            }
            if b == b'&' {
                if let Some(len) = html_entity_len(rest) {
                    i += len;
                    continue;
                }
            }
            let ch = if b < 0x80 {
                b as char
            } else {
                // `i` is always on a char boundary: we only ever advance by whole chars.
                match text[i..].chars().next() {
                    Some(c) => c,
                    None => break,
                }
            };
            if b == b'#'
                && rest
                    .get(1)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c >= 0x80)
            {
                // A hashtag reads as its word: "#happy" carries the sentiment of "happy".
                i += 1;
                continue;
            }
            if ch.is_alphanumeric() {
                i = self.read_word(text, i, buf, &mut scope);
                continue;
            }
            i += ch.len_utf8();
            match ch {
                '!' | '?' => {
                    let run_end = i + bytes[i..]
                        .iter()
                        .take_while(|&&c| c == b'!' || c == b'?')
                        .count();
                    let run = &bytes[i - 1..run_end];
                    let has_bang = run.contains(&b'!');
                    let has_q = run.contains(&b'?');
                    let token = match (has_bang, has_q, run.len() > 1) {
                        (true, true, _) => "?!",
                        (true, false, false) => "!",
                        (true, false, true) => "!!",
                        (false, _, false) => "?",
                        (false, _, true) => "??",
                    };
                    scope.close_scope();
                    scope.symbol(token);
                    i = run_end;
                }
                '.' | '\u{2026}' => {
                    let run_end = i + bytes[i..].iter().take_while(|&&c| c == b'.').count();
                    if ch == '\u{2026}' || run_end > i {
                        scope.symbol("...");
                    }
                    scope.close_scope();
                    i = run_end;
                }
                ',' | ';' | ':' => scope.close_scope(),
                c if c.is_ascii() || c.is_whitespace() || is_invisible(c) => {}
                c if ('\u{2000}'..='\u{206F}').contains(&c) => {} // general punctuation
                c => {
                    // Emoji and other symbols: each one is a token of its own.
                    buf.clear();
                    buf.push(c);
                    scope.symbol(buf);
                }
            }
        }
    }

    /// Reads one word starting at `start` (an alphanumeric char), emits it normalized and
    /// returns the index after it.
    fn read_word<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        buf: &mut String,
        scope: &mut Scope<'_, S>,
    ) -> usize {
        let Some(word) = self.plain_word(text.as_bytes(), start) else {
            return self.read_word_normalized(text, start, buf, scope);
        };
        // ASCII bytes, so both ends are char boundaries.
        let raw = &text[start..word.end];
        let normalized = if word.has_capitals {
            buf.clear();
            buf.push_str(raw);
            buf.make_ascii_lowercase();
            buf.as_str()
        } else {
            raw
        };
        self.emit_word(normalized, word.all_digits, false, scope);
        word.end
    }

    /// Emits a normalized word: `<num>` for digits (when numbers are replaced), else the word,
    /// followed by `<elong>` when it was shortened (and that is marked).
    #[inline]
    fn emit_word<S: TokenSink>(
        &self,
        word: &str,
        all_digits: bool,
        elongated: bool,
        scope: &mut Scope<'_, S>,
    ) {
        let s = &self.settings;
        if s.numbers && all_digits {
            scope.symbol("<num>");
        } else {
            scope.word(word);
            if elongated && s.mark_elongation {
                scope.symbol("<elong>");
            }
        }
    }

    /// The word at `start` when normalizing it is at most ASCII lowercasing, so it needs no
    /// char-by-char pass: ASCII letters and digits only, no character repeated past
    /// `max_repeat` (once lowercased), and ending at ASCII that cannot continue it (not an
    /// apostrophe). Most words are such.
    #[inline]
    fn plain_word(&self, bytes: &[u8], start: usize) -> Option<PlainWord> {
        let s = &self.settings;
        // Setting the 0x20 bit lowercases an ASCII letter and leaves a digit as it is.
        let fold = if s.lowercase { 0x20 } else { 0 };
        let (mut last, mut run, mut classes) = (0u8, 0u8, 0u8);
        let mut len = 0;
        for &b in &bytes[start..] {
            let class = WORD_BYTE[usize::from(b)];
            if class == 0 {
                break;
            }
            classes |= class;
            let c = b | fold;
            if c == last {
                run = run.saturating_add(1);
                if s.max_repeat != 0 && run > s.max_repeat {
                    return None;
                }
            } else {
                (last, run) = (c, 1);
            }
            len += 1;
        }
        if len == 0 {
            return None;
        }
        let end = start + len;
        match bytes.get(end) {
            Some(&b) if b >= 0x80 || b == b'\'' => None,
            _ => Some(PlainWord {
                end,
                all_digits: classes == DIGIT,
                has_capitals: s.lowercase && classes & UPPER != 0,
            }),
        }
    }

    /// [`Self::read_word`] for any word: normalizes it into `buf` char by char. Kept out of
    /// line: few words need it, and inlined it would make every word pay its larger frame.
    #[inline(never)]
    fn read_word_normalized<S: TokenSink>(
        &self,
        text: &str,
        start: usize,
        buf: &mut String,
        scope: &mut Scope<'_, S>,
    ) -> usize {
        let s = &self.settings;
        buf.clear();
        let mut squash = Squash {
            buf,
            max_repeat: s.max_repeat,
            last: '\0',
            run: 0,
            elongated: false,
        };
        let mut all_digits = true;
        let bytes = text.as_bytes();
        let char_at = |i: usize| -> Option<char> {
            match bytes.get(i) {
                Some(&b) if b < 0x80 => Some(b as char),
                Some(_) => text.get(i..).and_then(|t| t.chars().next()),
                None => None,
            }
        };
        let mut i = start;
        loop {
            // Fast path: a run of ASCII letters and digits, byte by byte.
            while let Some(&b) = bytes.get(i) {
                if !b.is_ascii_alphanumeric() {
                    break;
                }
                let c = if s.lowercase {
                    b.to_ascii_lowercase()
                } else {
                    b
                } as char;
                all_digits &= b.is_ascii_digit();
                squash.push(c);
                i += 1;
            }
            let Some(orig) = char_at(i) else { break };
            let len = orig.len_utf8();
            let c = if orig == '\u{2019}' { '\'' } else { orig };
            if c == '\'' {
                // An apostrophe belongs to the word only between two alphanumerics ("don't").
                if !char_at(i + len).is_some_and(char::is_alphanumeric) {
                    break;
                }
            } else if !(c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric())) {
                break;
            }
            i += len;
            all_digits &= c.is_ascii_digit();
            let mut push = |c: char| squash.push(c);
            if c.is_ascii() {
                push(if s.lowercase {
                    c.to_ascii_lowercase()
                } else {
                    c
                });
            } else if s.lowercase && !c.is_lowercase() {
                c.to_lowercase().for_each(&mut push);
            } else {
                push(c);
            }
        }
        let elongated = squash.elongated;
        self.emit_word(buf, all_digits, elongated, scope);
        i
    }
}

/// [`WORD_BYTE`] classes, one bit each.
const DIGIT: u8 = 1;
const LOWER: u8 = 2;
const UPPER: u8 = 4;

/// The class of each byte for [`TweetTokenizer::plain_word`]: an ASCII digit, lowercase or
/// capital letter, or 0 for any other byte (a plain word ends there).
const WORD_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_lowercase() {
            LOWER
        } else if c.is_ascii_uppercase() {
            UPPER
        } else {
            0
        };
        b += 1;
    }
    table
};

/// A word [`TweetTokenizer::plain_word`] found.
struct PlainWord {
    /// Index after its last byte.
    end: usize,
    /// Made of digits only.
    all_digits: bool,
    /// Has capitals to lowercase.
    has_capitals: bool,
}

/// Appends a word's characters, dropping those past `max_repeat` identical ones in a row.
struct Squash<'b> {
    buf: &'b mut String,
    max_repeat: u8,
    last: char,
    run: u8,
    elongated: bool,
}

impl Squash<'_> {
    #[inline]
    fn push(&mut self, c: char) {
        if c == self.last {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = c;
            self.run = 1;
        }
        if self.max_repeat == 0 || self.run <= self.max_repeat {
            self.buf.push(c);
        } else {
            self.elongated = true;
        }
    }
}

/// True when `w` opens a negation scope.
fn is_negator(w: &str) -> bool {
    if w.ends_with("n't") {
        return true;
    }
    // Cheap pre-check: every listed negator starts with one of these letters.
    if !matches!(
        w.as_bytes().first(),
        Some(b'n' | b'c' | b'd' | b'w' | b'i' | b'a' | b'h' | b's')
    ) {
        return false;
    }
    matches!(
        w,
        "not"
            | "no"
            | "never"
            | "nothing"
            | "nobody"
            | "none"
            | "nowhere"
            | "neither"
            | "nor"
            | "cannot"
            | "cant"
            | "dont"
            | "wont"
            | "didnt"
            | "doesnt"
            | "isnt"
            | "arent"
            | "wasnt"
            | "werent"
            | "hasnt"
            | "havent"
            | "hadnt"
            | "couldnt"
            | "shouldnt"
            | "wouldnt"
            | "aint"
            | "without"
    ) || w.ends_with("n't")
}

/// True for bytes that can appear in a Twitter handle.
fn is_handle_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Zero-width and presentation characters that carry no meaning on their own: variation
/// selectors, joiners and skin-tone modifiers.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{200B}'..='\u{200F}' | '\u{1F3FB}'..='\u{1F3FF}')
        || c.is_control()
}

/// True when `rest` starts a URL (`http://`, `https://` or `www.`), case-insensitively.
fn starts_url(rest: &[u8]) -> bool {
    if !matches!(rest.first(), Some(b'h' | b'H' | b'w' | b'W')) {
        return false;
    }
    let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
    starts(b"http://") || starts(b"https://") || starts(b"www.")
}

/// Index of the first ASCII whitespace at or after `i` (or the end).
fn skip_non_space(bytes: &[u8], i: usize) -> usize {
    i + bytes[i..]
        .iter()
        .take_while(|b| !b.is_ascii_whitespace())
        .count()
}

/// Matches an emoticon at the start of `rest`; it must not run into a letter or digit
/// (so `:Day` and `XDR` are not faces).
fn match_emoticon(rest: &[u8]) -> Option<(usize, &'static str)> {
    match rest.first() {
        Some(b':' | b';' | b'=' | b'<' | b'&' | b'(' | b')' | b'^') => {}
        // Faces that start with a letter ("xD", "D:") need a non-letter right after it.
        Some(b'x' | b'X') if rest.get(1) == Some(&b'D') => {}
        Some(b'D') if rest.get(1) == Some(&b':') => {}
        _ => return None,
    }
    EMOTICONS.iter().find_map(|&(face, class)| {
        let f = face.as_bytes();
        let fits = rest.starts_with(f) && !rest.get(f.len()).is_some_and(u8::is_ascii_alphanumeric);
        fits.then_some((f.len(), class))
    })
}

/// Length of an HTML entity (`&amp;`, `&quot;`, `&#39;`, …) at the start of `rest`, which the
/// tokenizer skips: Twitter's API escapes these characters and they carry no sentiment.
fn html_entity_len(rest: &[u8]) -> Option<usize> {
    const ENTITIES: &[&[u8]] = &[b"&amp;", b"&quot;", b"&lt;", b"&gt;", b"&#39;", b"&apos;"];
    ENTITIES
        .iter()
        .find(|e| rest.starts_with(e))
        .map(|e| e.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Pipeline;

    fn toks(text: &str) -> Vec<String> {
        Pipeline::Tweet(TweetTokenizer::new(TweetSettings::default())).tokens(text)
    }

    #[test]
    fn lowercases_and_splits_words() {
        assert_eq!(toks("Hello  World"), ["hello", "world"]);
        assert_eq!(toks("ÉCOLE Straße"), ["école", "straße"]);
    }

    #[test]
    fn replaces_urls_mentions_and_numbers() {
        assert_eq!(
            toks("@Bob_1 see https://t.co/xyz?a=1 www.x.com 2015"),
            ["<user>", "see", "<url>", "<url>", "<num>"]
        );
        assert_eq!(toks("email me @ home"), ["email", "me", "home"]);
    }

    #[test]
    fn hashtags_read_as_their_word() {
        assert_eq!(toks("#Happy #blessed"), ["happy", "blessed"]);
    }

    #[test]
    fn emoticons_become_classes() {
        assert_eq!(
            toks("great :) :-( <3 xD"),
            ["great", "<smile>", "<sadface>", "<heart>", "<lolface>"]
        );
        assert_eq!(toks("&lt;3 you"), ["<heart>", "you"]);
        assert_eq!(toks(":Day XDR"), ["day", "xdr"]);
    }

    #[test]
    fn emoji_are_tokens_and_modifiers_are_dropped() {
        assert_eq!(toks("love it😍😂"), ["love", "it", "😍", "😂"]);
        assert_eq!(toks("👍🏽\u{FE0F}"), ["👍"]);
    }

    #[test]
    fn elongation_is_squashed_and_marked() {
        assert_eq!(toks("sooooo goood"), ["soo", "<elong>", "good", "<elong>"]);
        assert_eq!(toks("soo"), ["soo"]);
    }

    #[test]
    fn negation_scope_marks_following_words_until_punctuation() {
        assert_eq!(
            toks("I don't like this movie, it is fun"),
            [
                "i",
                "don't",
                "like_NEG",
                "this_NEG",
                "movie_NEG",
                "it",
                "is",
                "fun"
            ]
        );
        assert_eq!(toks("not good. good"), ["not", "good_NEG", "good"]);
        assert_eq!(toks("never ever"), ["never", "ever_NEG"]);
        assert_eq!(toks("you mustn't go"), ["you", "mustn't", "go_NEG"]);
    }

    #[test]
    fn repeated_punctuation_is_kept_as_a_signal() {
        assert_eq!(
            toks("wow!!! really?? what?! ok... fine."),
            ["wow", "!!", "really", "??", "what", "?!", "ok", "...", "fine"]
        );
        assert_eq!(toks("yes!"), ["yes", "!"]);
        assert_eq!(toks("wait…"), ["wait", "..."]);
    }

    #[test]
    fn html_entities_are_skipped() {
        assert_eq!(
            toks("rock &amp; roll &quot;hi&quot;"),
            ["rock", "roll", "hi"]
        );
    }

    #[test]
    fn apostrophes_join_only_inside_words() {
        assert_eq!(toks("'quoted' it’s"), ["quoted", "it's"]);
    }

    #[test]
    fn odd_input_does_not_break() {
        assert!(toks("").is_empty());
        assert!(toks("\u{0}\u{7}\t\r\n").is_empty());
        assert_eq!(toks("a\u{0}b"), ["a", "b"]);
    }

    proptest::proptest! {
        /// A word emitted straight from the text is the word normalization gives, and ends
        /// where it does, from every word start of any text and with any settings.
        #[test]
        fn a_plain_word_is_the_normalized_word(
            text in "[aAbB0x'é .!]{0,16}",
            max_repeat in 0u8..4,
            lowercase: bool,
            numbers: bool,
        ) {
            let t = TweetTokenizer::new(TweetSettings {
                max_repeat,
                lowercase,
                numbers,
                ..TweetSettings::default()
            });
            let starts = text.char_indices().filter(|(_, c)| c.is_alphanumeric());
            for (i, _) in starts {
                let read = |normalized: bool| {
                    let mut tokens = Vec::new();
                    let mut sink = |tk: Token<'_>| tokens.push((tk.text.to_owned(), tk.negated));
                    let mut scope = Scope { sink: &mut sink, negation_left: 0, negation_scope: 3 };
                    let mut buf = String::new();
                    let end = if normalized {
                        t.read_word_normalized(&text, i, &mut buf, &mut scope)
                    } else {
                        t.read_word(&text, i, &mut buf, &mut scope)
                    };
                    (end, tokens)
                };
                proptest::prop_assert_eq!(read(false), read(true));
            }
        }
    }
}
