//! What people think: subjects, windowed opinion summaries and recent examples per deployment.
//!
//! ```text
//!  scorer thread ──(per batch: Tally, samples, model version)──► Opinion (one lock per batch)
//!                                                                   │ close_due every second
//!  summary.rs: writer task ◄────────────── closed windows ◄─────────┘
//!     └─► summary topic (key deployment/subject/window start)  ──► restored at the next start
//!  http/opinion.rs: JSON, server-sent events and the live page read Opinion::view
//! ```
//!
//! [`subjects`] matches tweets to named keyword sets; [`window`] counts them in tumbling
//! event-time windows; [`summary`] writes closed windows to Kafka and reads them back.

pub mod subjects;
pub mod summary;
pub mod window;

pub use subjects::{MatchScratch, SubjectError, Subjects, SubjectsConfig, ALL};
pub use window::{Tally, WindowSettings, WindowSummary, Windows};

use crate::model::Label;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Recent tweets kept per label.
pub const RECENT_PER_LABEL: usize = 5;
/// Longest text kept for a recent tweet, in characters.
pub const RECENT_TEXT_CHARS: usize = 280;
/// Model version changes remembered.
pub const MAX_MODEL_MARKS: usize = 100;
/// Most windows kept per subject, whatever `history_ms` says.
pub const MAX_HISTORY_WINDOWS: u64 = 10_080;

/// Opinion summary settings of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Topic receiving one JSON record per closed window and subject (none when absent).
    #[serde(default)]
    pub topic: Option<String>,
    /// Window length (ms).
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// How long after a window's end its records may still arrive (ms).
    #[serde(default = "default_lateness_ms")]
    pub allowed_lateness_ms: u64,
    /// How long closed windows stay in memory for the page and the API (ms; at most
    /// [`MAX_HISTORY_WINDOWS`] windows are kept).
    #[serde(default = "default_history_ms")]
    pub history_ms: u64,
}

const fn default_window_ms() -> u64 {
    60_000
}
const fn default_lateness_ms() -> u64 {
    10_000
}
const fn default_history_ms() -> u64 {
    24 * 3_600_000
}

impl Default for SummaryConfig {
    fn default() -> Self {
        SummaryConfig {
            topic: None,
            window_ms: default_window_ms(),
            allowed_lateness_ms: default_lateness_ms(),
            history_ms: default_history_ms(),
        }
    }
}

impl SummaryConfig {
    /// Checks the bounds; the error is `(key relative to summary, reason)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1_000..=86_400_000).contains(&self.window_ms) {
            return Err(("window_ms", "must be between 1000 and 86400000".into()));
        }
        if self.allowed_lateness_ms > 3_600_000 {
            return Err(("allowed_lateness_ms", "must be at most 3600000".into()));
        }
        if !(self.window_ms..=366 * 86_400_000).contains(&self.history_ms) {
            return Err((
                "history_ms",
                "must be at least window_ms and at most a year".into(),
            ));
        }
        if self.topic.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(("topic", "must not be empty".into()));
        }
        Ok(())
    }

    /// The window settings; the history holds at most [`MAX_HISTORY_WINDOWS`] windows.
    pub fn windows(&self) -> WindowSettings {
        let history = self
            .history_ms
            .min(self.window_ms.saturating_mul(MAX_HISTORY_WINDOWS));
        WindowSettings {
            window_ms: self.window_ms as i64,
            lateness_ms: self.allowed_lateness_ms as i64,
            history_ms: history as i64,
        }
    }
}

/// A recent scored tweet shown on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Record id, when the input had one.
    pub id: Option<String>,
    /// The text (first [`RECENT_TEXT_CHARS`] characters).
    pub text: String,
    /// P(positive).
    pub positive_probability: f64,
    /// When it was scored (ms since the epoch).
    pub at_ms: i64,
}

/// When the serving model version changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelMark {
    /// First batch scored with it (ms since the epoch).
    pub at_ms: i64,
    /// The version.
    pub version: String,
}

/// One subject's windows, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectView {
    /// Subject name (`*` for every tweet).
    pub name: String,
    /// Keywords (empty for `*`).
    pub keywords: Vec<String>,
    /// Windows, oldest first; the last ones may still be open.
    pub windows: Vec<WindowSummary>,
}

/// A deployment's opinion data.
#[derive(Debug, Clone, Serialize)]
pub struct OpinionView {
    /// Window length (ms).
    pub window_ms: i64,
    /// Allowed lateness (ms).
    pub allowed_lateness_ms: i64,
    /// Summary topic, if any.
    pub summary_topic: Option<String>,
    /// `*` first, then each subject.
    pub subjects: Vec<SubjectView>,
    /// Model version changes, oldest first.
    pub model_marks: Vec<ModelMark>,
    /// Recent tweets labeled POSITIVE, newest first.
    pub recent_positive: Vec<Sample>,
    /// Recent tweets labeled NEGATIVE, newest first.
    pub recent_negative: Vec<Sample>,
    /// Records that arrived after their window closed.
    pub late_records: u64,
}

struct State {
    windows: Windows,
    /// Last input offset counted, per partition.
    counted: HashMap<i32, i64>,
    recent: [VecDeque<Sample>; 2],
    marks: VecDeque<ModelMark>,
}

/// The opinion state of one deployment, shared by its scorers, its summary writer and the
/// HTTP API. Kept across stops and starts in one process.
pub struct Opinion {
    config: SummaryConfig,
    subjects: Option<Arc<Subjects>>,
    keywords: SubjectsConfig,
    state: Mutex<State>,
    restored: AtomicBool,
}

impl std::fmt::Debug for Opinion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opinion")
            .field("config", &self.config)
            .field("keywords", &self.keywords)
            .finish_non_exhaustive()
    }
}

impl Opinion {
    /// Opinion state for validated subjects and settings.
    pub fn new(keywords: &SubjectsConfig, config: &SummaryConfig) -> Result<Opinion, SubjectError> {
        let subjects = Subjects::compile(keywords)?;
        let mut names = vec![ALL.to_owned()];
        names.extend(subjects.names().iter().cloned());
        Ok(Opinion {
            config: config.clone(),
            subjects: (!subjects.is_empty()).then(|| Arc::new(subjects)),
            keywords: keywords.clone(),
            state: Mutex::new(State {
                windows: Windows::new(config.windows(), names),
                counted: HashMap::new(),
                recent: Default::default(),
                marks: VecDeque::new(),
            }),
            restored: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the windows still have to be read back from the summary topic (once per
    /// process, at the first start that manages it).
    pub fn restore_due(&self) -> bool {
        !self.restored.load(Ordering::SeqCst)
    }

    /// Takes back windows read from the summary topic, once.
    pub fn restore(&self, saved: Vec<WindowSummary>) {
        self.lock().windows.restore(saved, crate::stream::now_ms());
        self.restored.store(true, Ordering::SeqCst);
    }

    /// The compiled subjects, when the deployment defines any.
    pub fn subjects(&self) -> Option<&Arc<Subjects>> {
        self.subjects.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &SummaryConfig {
        &self.config
    }

    /// Window length (ms).
    pub fn window_ms(&self) -> i64 {
        self.config.window_ms as i64
    }

    /// A tally for one batch, knowing which records this process has counted already.
    pub fn tally(&self) -> Tally {
        Tally::new(self.window_ms(), self.lock().counted.clone())
    }

    /// Adds one scored batch: its window counts, a recent example per label (by
    /// [`Label::index`]), and the model
    /// version it was scored with. Returns how many of its tweets were late.
    pub fn record_batch(
        &self,
        tally: &Tally,
        samples: [Option<Sample>; 2],
        version: &str,
        wall_ms: i64,
    ) -> u64 {
        let mut s = self.lock();
        let late = s.windows.merge(tally, wall_ms);
        for (&partition, &offset) in &tally.counted {
            let last = s.counted.entry(partition).or_insert(-1);
            *last = (*last).max(offset);
        }
        for (i, sample) in samples.into_iter().enumerate() {
            if let Some(sample) = sample {
                let q = &mut s.recent[i];
                q.push_front(sample);
                q.truncate(RECENT_PER_LABEL);
            }
        }
        if s.marks.back().is_none_or(|m| m.version != version) && !tally.is_empty() {
            s.marks.push_back(ModelMark {
                at_ms: wall_ms,
                version: version.to_owned(),
            });
            if s.marks.len() > MAX_MODEL_MARKS {
                s.marks.pop_front();
            }
        }
        late
    }

    /// Closes the windows that are due (see [`window`]).
    pub fn close_due(&self, wall_ms: i64) -> Vec<WindowSummary> {
        self.lock().windows.close_due(wall_ms)
    }

    /// The most recently closed window of every subject, and the late records so far.
    pub fn latest_closed(&self) -> (Vec<WindowSummary>, u64) {
        let s = self.lock();
        (s.windows.latest_closed(), s.windows.late())
    }

    /// The windows still open.
    pub fn open_summaries(&self) -> Vec<WindowSummary> {
        self.lock().windows.open_summaries()
    }

    /// The data for the page and the API: the last `windows` windows of every subject.
    pub fn view(&self, windows: usize) -> OpinionView {
        let s = self.lock();
        let w = &s.windows;
        let newest = w.newest_start().unwrap_or(0);
        let back = self.window_ms().saturating_mul(windows.max(1) as i64 - 1);
        let since = newest.saturating_sub(back);
        let subjects = w
            .subjects()
            .iter()
            .enumerate()
            .map(|(i, name)| SubjectView {
                name: name.clone(),
                keywords: self.keywords.get(name).cloned().unwrap_or_default(),
                windows: w.history(i, since),
            })
            .collect();
        OpinionView {
            window_ms: self.window_ms(),
            allowed_lateness_ms: self.config.allowed_lateness_ms as i64,
            summary_topic: self.config.topic.clone(),
            subjects,
            model_marks: s.marks.iter().cloned().collect(),
            recent_positive: s.recent[Label::Positive.index()].iter().cloned().collect(),
            recent_negative: s.recent[Label::Negative.index()].iter().cloned().collect(),
            late_records: w.late(),
        }
    }
}

impl Sample {
    /// A sample of `text`, cut to [`RECENT_TEXT_CHARS`] characters.
    pub fn new(id: Option<&str>, text: &str, positive_probability: f64, at_ms: i64) -> Sample {
        Sample {
            id: id.map(|i| i.chars().take(64).collect()),
            text: text.chars().take(RECENT_TEXT_CHARS).collect(),
            positive_probability,
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opinion() -> Opinion {
        let subjects: SubjectsConfig = [("acme".to_string(), vec!["acme".to_string()])].into();
        Opinion::new(&subjects, &SummaryConfig::default()).unwrap()
    }

    fn tally(n: usize) -> Tally {
        let mut t = Tally::new(60_000, HashMap::new());
        for i in 0..n {
            t.add(1_000 + i as i64, 0, i % 2 == 0, 0.5);
        }
        t
    }

    #[test]
    fn a_batch_scored_again_counts_nothing() {
        let o = opinion();
        for _ in 0..2 {
            let mut t = o.tally();
            for offset in 0..10 {
                t.count(3, offset, 1_000, 0, true, 0.9);
            }
            o.record_batch(&t, [None, None], "v1", 0);
        }
        assert_eq!(o.view(1).subjects[0].windows[0].positive, 10);
    }

    #[test]
    fn recent_tweets_and_model_marks_are_bounded_and_newest_first() {
        let o = opinion();
        for i in 0..(RECENT_PER_LABEL + 3) {
            let sample = Sample::new(
                Some("id"),
                &format!("tweet {i} {}", "x".repeat(400)),
                0.9,
                i as i64,
            );
            o.record_batch(&tally(1), [None, Some(sample)], "v1", i as i64);
        }
        o.record_batch(&tally(1), [None, None], "v2", 100);
        o.record_batch(&tally(1), [None, None], "v2", 101);
        let v = o.view(30);
        assert_eq!(v.recent_positive.len(), RECENT_PER_LABEL);
        assert!(v.recent_positive[0].text.starts_with("tweet 7"));
        assert_eq!(v.recent_positive[0].text.chars().count(), RECENT_TEXT_CHARS);
        assert!(v.recent_negative.is_empty());
        let marks: Vec<&str> = v.model_marks.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(marks, ["v1", "v2"], "a mark per change, not per batch");
        assert_eq!(v.subjects.len(), 2);
        assert_eq!(v.subjects[1].keywords, ["acme"]);
        assert_eq!(v.subjects[0].windows[0].total(), 10);
    }

    #[test]
    fn summary_settings_are_checked_and_history_is_capped() {
        let ok = SummaryConfig::default();
        assert!(ok.validate().is_ok());
        let short = SummaryConfig {
            window_ms: 999,
            ..SummaryConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().0, "window_ms");
        let history = SummaryConfig {
            history_ms: 10,
            ..SummaryConfig::default()
        };
        assert_eq!(history.validate().unwrap_err().0, "history_ms");
        let small = SummaryConfig {
            window_ms: 1_000,
            ..SummaryConfig::default()
        };
        assert_eq!(
            small.windows().history_ms,
            1_000 * MAX_HISTORY_WINDOWS as i64
        );
    }
}
