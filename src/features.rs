//! Feature hashing: tokens become unigram and bigram indices into a fixed-size weight table.
//!
//! A token's 64-bit hash is xxh3 (a specified, platform-independent hash) of its bytes with the
//! model's seed; negated tokens are salted so "good" and "not … good" get different weights. A
//! bigram combines its two tokens' hashes. The high `bits` bits of a multiplicative mix pick the
//! slot. Everything here is recorded in the model file, so a model hashes the same everywhere.

use crate::text::{Pipeline, Token};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Feature settings stored in the model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// The weight table has `2^bits` slots.
    pub bits: u8,
    /// Seed of the token hash.
    pub seed: u64,
    /// Add a feature for each pair of adjacent tokens.
    pub bigrams: bool,
    /// Scale the summed weights by `1/sqrt(feature count)`, so long and short tweets score on
    /// the same footing.
    pub normalize: bool,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings {
            bits: 20,
            seed: 0x5eed_5c0e,
            bigrams: true,
            normalize: true,
        }
    }
}

/// Smallest and largest table sizes a model may declare.
pub const BITS_RANGE: std::ops::RangeInclusive<u8> = 10..=26;

const NEGATED_SALT: u64 = 0x6e65_6761_7465_6421;
const BIGRAM_SALT: u64 = 0xb16a_a3c5_0f1e_77d3;
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// Maps text to feature slots according to [`FeatureSettings`].
#[derive(Debug, Clone)]
pub struct FeatureHasher {
    settings: FeatureSettings,
    shift: u32,
}

impl FeatureHasher {
    /// A hasher for `settings`; `settings.bits` must lie in [`BITS_RANGE`] (the model loader
    /// checks this before building one).
    pub fn new(settings: FeatureSettings) -> Self {
        let bits = settings.bits.clamp(*BITS_RANGE.start(), *BITS_RANGE.end());
        FeatureHasher {
            shift: 64 - u32::from(bits),
            settings,
        }
    }

    /// The settings this hasher runs with.
    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// Number of slots in the weight table.
    pub fn dimension(&self) -> usize {
        1usize << (64 - self.shift)
    }

    #[inline]
    fn slot(&self, h: u64) -> u32 {
        // The shift leaves at most 26 bits, so the value always fits.
        (h.wrapping_mul(MIX) >> self.shift) as u32
    }

    /// Runs `pipeline` over `text` and calls `f` with the slot of every feature; returns how
    /// many features there were.
    #[inline]
    pub fn for_each_feature(
        &self,
        pipeline: &Pipeline,
        text: &str,
        scratch: &mut String,
        mut f: impl FnMut(u32),
    ) -> u32 {
        let seed = self.settings.seed;
        let bigrams = self.settings.bigrams;
        let mut prev: Option<u64> = None;
        let mut count = 0u32;
        pipeline.tokenize(text, scratch, &mut |t: Token<'_>| {
            let mut h = xxh3_64_with_seed(t.text.as_bytes(), seed);
            if t.negated {
                h ^= NEGATED_SALT;
            }
            f(self.slot(h));
            count += 1;
            if bigrams {
                if let Some(p) = prev {
                    f(self.slot(p.rotate_left(29) ^ h ^ BIGRAM_SALT));
                    count += 1;
                }
                prev = Some(h);
            }
        });
        count
    }

    /// The scale applied to a sum of `count` feature weights.
    #[inline]
    pub fn scale(&self, count: u32) -> f32 {
        if self.settings.normalize && count > 0 {
            1.0 / (count as f32).sqrt()
        } else {
            1.0
        }
    }

    /// Collects the feature slots of `text` into `out` (cleared first); returns the scale.
    pub fn features_into(
        &self,
        pipeline: &Pipeline,
        text: &str,
        scratch: &mut String,
        out: &mut Vec<u32>,
    ) -> f32 {
        out.clear();
        let n = self.for_each_feature(pipeline, text, scratch, |s| out.push(s));
        self.scale(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{TweetSettings, TweetTokenizer};

    fn pipeline() -> Pipeline {
        Pipeline::Tweet(TweetTokenizer::new(TweetSettings::default()))
    }

    #[test]
    fn unigrams_and_bigrams_are_counted_and_in_range() {
        let h = FeatureHasher::new(FeatureSettings::default());
        let mut out = Vec::new();
        let scale = h.features_into(&pipeline(), "very good movie", &mut String::new(), &mut out);
        assert_eq!(out.len(), 5); // 3 unigrams + 2 bigrams
        assert!(out.iter().all(|&s| (s as usize) < h.dimension()));
        assert!((scale - 1.0 / 5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn negation_changes_the_slot() {
        let h = FeatureHasher::new(FeatureSettings::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        h.features_into(&pipeline(), "good", &mut String::new(), &mut a);
        h.features_into(&pipeline(), "not good", &mut String::new(), &mut b);
        assert!(!b.contains(&a[0]));
    }

    #[test]
    fn hashing_is_stable() {
        // A model file's weights are only meaningful if these slots never change.
        let h = FeatureHasher::new(FeatureSettings::default());
        let mut out = Vec::new();
        h.features_into(&pipeline(), "happy day", &mut String::new(), &mut out);
        let again = {
            let mut v = Vec::new();
            FeatureHasher::new(FeatureSettings::default()).features_into(
                &pipeline(),
                "happy day",
                &mut String::new(),
                &mut v,
            );
            v
        };
        assert_eq!(out, again);
        assert_eq!(
            out[0],
            h.slot(xxh3_64_with_seed(b"happy", FeatureSettings::default().seed))
        );
    }
}
