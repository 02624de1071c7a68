//! Tumbling event-time windows of positive and negative counts, per subject.
//!
//! A record counts in the window holding its timestamp (its Kafka record time, clamped to the
//! wall clock so a clock far in the future cannot close every window). Windows close on the
//! *watermark*: the newest timestamp seen minus the allowed lateness. A window `[s, s + W)`
//! closes once the watermark reaches `s + W`; when no record at all has arrived for `W + L`
//! (wall clock), every open window closes, so a stream that goes quiet still reports its last
//! minutes. A record whose window has already closed is *late*: counted in `late`, not in any
//! window (a closed window is never changed, so a summary written once is never doubled).
//! Closed windows are kept for `history`, measured back from the watermark.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Window length, allowed lateness and history kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    /// Window length (ms).
    pub window_ms: i64,
    /// How long after a window's end records may still arrive for it (ms).
    pub lateness_ms: i64,
    /// How long closed windows are kept (ms).
    pub history_ms: i64,
}

/// Counts of one window of one subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Tweets labeled POSITIVE.
    pub positive: u64,
    /// Tweets labeled NEGATIVE.
    pub negative: u64,
    /// Sum of P(positive) over the window's tweets.
    pub positive_probability_sum: f64,
}

impl Counts {
    /// Counts one scored tweet.
    pub fn add(&mut self, positive: bool, positive_probability: f64) {
        if positive {
            self.positive += 1;
        } else {
            self.negative += 1;
        }
        self.positive_probability_sum += positive_probability;
    }

    fn merge(&mut self, o: &Counts) {
        self.positive += o.positive;
        self.negative += o.negative;
        self.positive_probability_sum += o.positive_probability_sum;
    }

    /// Tweets counted.
    pub fn total(&self) -> u64 {
        self.positive + self.negative
    }
}

/// One window of one subject, as reported and written to the summary topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Subject name (`*` for every tweet).
    pub subject: String,
    /// Window start (ms since the epoch, inclusive).
    pub start_ms: i64,
    /// Window end (ms since the epoch, exclusive).
    pub end_ms: i64,
    /// Tweets labeled POSITIVE.
    pub positive: u64,
    /// Tweets labeled NEGATIVE.
    pub negative: u64,
    /// positive / (positive + negative).
    pub positive_share: f64,
    /// Mean P(positive) of the window's tweets.
    pub mean_positive_probability: f64,
    /// False while the window may still change.
    pub closed: bool,
}

/// Per-batch counts, merged into [`Windows`] under one lock.
///
/// It also knows, per input partition, the last offset this process has counted: a record
/// scored again (a rewind after a failed delivery, a restart in the same process, a partition
/// moving between workers) is not counted twice.
#[derive(Debug, Default)]
pub struct Tally {
    window_ms: i64,
    cells: Vec<((i64, usize), Counts)>,
    /// Newest event time in the batch.
    pub max_event_ms: Option<i64>,
    /// Last offset counted per partition (this process's, plus this batch's).
    pub(super) counted: HashMap<i32, i64>,
    /// Records skipped because they had been counted already.
    pub recounted: u64,
}

impl Tally {
    /// A tally for windows of `window_ms`, given what was counted already.
    pub fn new(window_ms: i64, counted: HashMap<i32, i64>) -> Tally {
        Tally {
            window_ms,
            counted,
            ..Tally::default()
        }
    }

    /// Counts a scored record at `event_ms` under every tweet and the subjects of `mask`,
    /// unless `partition`/`offset` was counted already. Returns whether it counted.
    pub fn count(
        &mut self,
        partition: i32,
        offset: i64,
        event_ms: i64,
        mask: u32,
        positive: bool,
        p: f64,
    ) -> bool {
        let last = self.counted.entry(partition).or_insert(-1);
        if offset <= *last {
            self.recounted += 1;
            return false;
        }
        *last = offset;
        self.add(event_ms, 0, positive, p);
        let mut m = mask;
        while m != 0 {
            self.add(event_ms, m.trailing_zeros() as usize + 1, positive, p);
            m &= m - 1;
        }
        true
    }

    /// Counts a tweet at `event_ms` under subject index `subject` (0 is every tweet).
    pub fn add(&mut self, event_ms: i64, subject: usize, positive: bool, p: f64) {
        let w = self.window_ms.max(1);
        let key = (event_ms - event_ms.rem_euclid(w), subject);
        match self.cells.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => c.add(positive, p),
            None => {
                let mut c = Counts::default();
                c.add(positive, p);
                self.cells.push((key, c));
            }
        }
        self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// The windows of one deployment: open ones being counted, closed ones kept for history.
#[derive(Debug)]
pub struct Windows {
    settings: WindowSettings,
    /// Subject names; index 0 is `*` (every tweet).
    subjects: Vec<String>,
    open: BTreeMap<(i64, usize), Counts>,
    closed: BTreeMap<(usize, i64), Counts>,
    /// Every window starting before this has closed.
    closed_before: i64,
    max_event_ms: Option<i64>,
    last_record_wall_ms: i64,
    late: u64,
}

impl Windows {
    /// Empty windows for `subjects` (index 0 must be `*`).
    pub fn new(settings: WindowSettings, subjects: Vec<String>) -> Windows {
        Windows {
            settings,
            subjects,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            closed_before: i64::MIN,
            max_event_ms: None,
            last_record_wall_ms: 0,
            late: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> WindowSettings {
        self.settings
    }

    /// Subject names, `*` first.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Records that arrived after their window closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Adds a batch's counts; returns how many of its tweets were late.
    pub fn merge(&mut self, tally: &Tally, wall_ms: i64) -> u64 {
        let mut late = 0;
        for ((start, subject), c) in &tally.cells {
            if *start < self.closed_before {
                if *subject == 0 {
                    late += c.total();
                }
                continue;
            }
            self.open.entry((*start, *subject)).or_default().merge(c);
        }
        if let Some(m) = tally.max_event_ms {
            self.max_event_ms = Some(self.max_event_ms.map_or(m, |x| x.max(m)));
        }
        if !tally.is_empty() {
            self.last_record_wall_ms = wall_ms;
        }
        self.late += late;
        late
    }

    /// Closes the windows the watermark (or a quiet stream) has passed and returns them.
    pub fn close_due(&mut self, wall_ms: i64) -> Vec<WindowSummary> {
        let s = self.settings;
        let idle = wall_ms - self.last_record_wall_ms >= s.window_ms + s.lateness_ms;
        let boundary = match (self.max_event_ms, idle) {
            (_, true) => self.open.keys().map(|(start, _)| start + s.window_ms).max(),
            (Some(m), false) => {
                let watermark = m - s.lateness_ms;
                Some(watermark - watermark.rem_euclid(s.window_ms))
            }
            (None, false) => None,
        };
        let Some(boundary) = boundary.filter(|b| *b > self.closed_before) else {
            return Vec::new();
        };
        self.closed_before = boundary;
        let still_open = self.open.split_off(&(boundary, 0));
        let due = std::mem::replace(&mut self.open, still_open);
        let mut out = Vec::with_capacity(due.len());
        for ((start, subject), c) in due {
            out.push(self.summary(subject, start, &c, true));
            self.closed.insert((subject, start), c);
        }
        let oldest = boundary - s.history_ms;
        self.closed.retain(|(_, start), _| *start >= oldest);
        out
    }

    fn summary(&self, subject: usize, start: i64, c: &Counts, closed: bool) -> WindowSummary {
        let n = c.total().max(1) as f64;
        WindowSummary {
            subject: self.subjects.get(subject).cloned().unwrap_or_default(),
            start_ms: start,
            end_ms: start + self.settings.window_ms,
            positive: c.positive,
            negative: c.negative,
            positive_share: c.positive as f64 / n,
            mean_positive_probability: c.positive_probability_sum / n,
            closed,
        }
    }

    /// The windows still open (`closed: false`), e.g. to save them at a clean stop.
    pub fn open_summaries(&self) -> Vec<WindowSummary> {
        self.open
            .iter()
            .map(|(&(start, subject), c)| self.summary(subject, start, c, false))
            .collect()
    }

    /// Every window of `subject` starting at or after `since_ms`, closed then open, by start.
    pub fn history(&self, subject: usize, since_ms: i64) -> Vec<WindowSummary> {
        let mut v: Vec<WindowSummary> = self
            .closed
            .range((subject, since_ms)..(subject, i64::MAX))
            .map(|(&(_, start), c)| self.summary(subject, start, c, true))
            .collect();
        v.extend(
            self.open
                .range((since_ms, 0)..)
                .filter(|((_, s), _)| *s == subject)
                .map(|(&(start, _), c)| self.summary(subject, start, c, false)),
        );
        v
    }

    /// Start of the newest window holding anything (open, or else the newest closed), if any.
    pub fn newest_start(&self) -> Option<i64> {
        let open = self.open.keys().next_back().map(|(start, _)| *start);
        let closed = (self.closed_before != i64::MIN && !self.closed.is_empty())
            .then(|| self.closed_before - self.settings.window_ms);
        open.or(closed)
    }

    /// The most recently closed window of every subject (zero counts for a subject without
    /// tweets in it), `*` first; empty before any window closed.
    pub fn latest_closed(&self) -> Vec<WindowSummary> {
        if self.closed_before == i64::MIN {
            return Vec::new();
        }
        let start = self.closed_before - self.settings.window_ms;
        (0..self.subjects.len())
            .map(|i| {
                let c = self.closed.get(&(i, start)).copied().unwrap_or_default();
                self.summary(i, start, &c, true)
            })
            .collect()
    }

    /// Takes back windows read from the summary topic: closed ones join the history and close
    /// everything before their end (so replayed records never count twice); open ones (saved
    /// at a clean stop) seed the open windows. Subjects no longer defined are skipped. A quiet
    /// stream closes the seeded windows `window + lateness` after `wall_ms`.
    pub fn restore(&mut self, saved: impl IntoIterator<Item = WindowSummary>, wall_ms: i64) {
        self.last_record_wall_ms = wall_ms;
        let w = self.settings.window_ms;
        for ws in saved {
            let Some(subject) = self.subjects.iter().position(|n| *n == ws.subject) else {
                continue;
            };
            if ws.end_ms - ws.start_ms != w || ws.start_ms.rem_euclid(w) != 0 {
                continue; // written with another window length
            }
            let c = Counts {
                positive: ws.positive,
                negative: ws.negative,
                positive_probability_sum: ws.mean_positive_probability * ws.total() as f64,
            };
            if ws.closed {
                self.open.remove(&(ws.start_ms, subject));
                self.closed.insert((subject, ws.start_ms), c);
                self.closed_before = self.closed_before.max(ws.end_ms);
            } else if ws.start_ms >= self.closed_before {
                self.open.insert((ws.start_ms, subject), c);
            }
        }
        // Open windows older than a restored closed one are closed too.
        let before = self.closed_before;
        self.open.retain(|(start, _), _| *start >= before);
        if let Some(&(_, start)) = self.closed.keys().max_by_key(|(_, s)| *s) {
            let oldest = start - self.settings.history_ms;
            self.closed.retain(|(_, s), _| *s >= oldest);
        }
    }
}

impl WindowSummary {
    /// Tweets counted.
    pub fn total(&self) -> u64 {
        self.positive + self.negative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 60_000;

    fn windows() -> Windows {
        Windows::new(
            WindowSettings {
                window_ms: W,
                lateness_ms: 10_000,
                history_ms: 10 * W,
            },
            vec!["*".into(), "acme".into()],
        )
    }

    fn batch(records: &[(i64, bool)]) -> Tally {
        let mut t = Tally::new(W, HashMap::new());
        for &(ts, pos) in records {
            t.add(ts, 0, pos, if pos { 0.9 } else { 0.2 });
        }
        t
    }

    #[test]
    fn a_record_counted_once_is_never_counted_again() {
        let mut t = Tally::new(W, [(0, 5)].into());
        assert!(
            !t.count(0, 5, 1_000, 0b1, true, 0.9),
            "counted before this batch"
        );
        assert!(t.count(0, 6, 1_000, 0b1, true, 0.9));
        assert!(
            !t.count(0, 6, 1_000, 0b1, true, 0.9),
            "the same record again"
        );
        assert!(t.count(1, 0, 1_000, 0, false, 0.1));
        assert_eq!(t.recounted, 2);
        let mut w = windows();
        w.merge(&t, 0);
        let all = w.history(0, 0);
        assert_eq!((all[0].positive, all[0].negative), (1, 1));
        assert_eq!(w.history(1, 0)[0].positive, 1, "subject bit 0 is index 1");
    }

    #[test]
    fn known_timestamps_give_exact_window_counts() {
        let mut w = windows();
        // 3 in [0, 60 s), 2 in [60 s, 120 s): the newest (119 s) puts the watermark at 109 s,
        // which closes [0, 60 s) only; a record at 130 s moves it to 120 s: [60 s, 120 s) closes.
        w.merge(&batch(&[(1_000, true), (59_999, false), (30_000, true)]), 0);
        w.merge(&batch(&[(60_000, true), (119_000, true)]), 0);
        let first = w.close_due(0);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].start_ms, first[0].positive, first[0].negative),
            (0, 2, 1)
        );
        assert!((first[0].positive_share - 2.0 / 3.0).abs() < 1e-9);
        assert!((first[0].mean_positive_probability - (0.9 + 0.9 + 0.2) / 3.0).abs() < 1e-9);
        assert!(w.close_due(0).is_empty(), "nothing new is due");
        w.merge(&batch(&[(130_000, false)]), 0);
        let second = w.close_due(0);
        assert_eq!(second.len(), 1);
        assert_eq!(
            (second[0].start_ms, second[0].positive, second[0].negative),
            (W, 2, 0)
        );
        // A record for a closed window is late and changes nothing.
        assert_eq!(w.merge(&batch(&[(5_000, true)]), 0), 1);
        assert_eq!(w.late(), 1);
        assert_eq!(w.history(0, 0)[0].positive, 2);
        assert_eq!(w.history(0, 0).len(), 3, "two closed, one open");
    }

    #[test]
    fn a_quiet_stream_closes_its_last_window() {
        let mut w = windows();
        w.merge(&batch(&[(1_000, true)]), 1_000);
        assert!(w.close_due(1_000 + W + 9_000).is_empty());
        let closed = w.close_due(1_000 + W + 10_000);
        assert_eq!(closed.len(), 1);
        assert!(w.open_summaries().is_empty());
    }

    #[test]
    fn restored_windows_are_never_counted_again() {
        let mut w = windows();
        w.merge(&batch(&[(1_000, true), (2_000, false), (70_000, true)]), 0);
        w.merge(&batch(&[(200_000, true)]), 0);
        let emitted = w.close_due(0);
        let saved_open = w.open_summaries();
        // A restart: the same records replayed into fresh windows restored from the topic.
        let mut r = windows();
        r.restore(emitted.iter().cloned().chain(saved_open), 0);
        assert_eq!(r.merge(&batch(&[(1_000, true), (70_000, true)]), 0), 2);
        r.merge(&batch(&[(200_500, false)]), 0);
        let open = r.open_summaries();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].positive, open[0].negative), (1, 1), "seeded + new");
        assert_eq!(r.history(0, 0)[0], emitted[0]);
    }

    #[test]
    fn history_is_bounded() {
        let mut w = windows();
        for i in 0..50 {
            w.merge(&batch(&[(i * W, true)]), 0);
            w.close_due(0);
        }
        assert!(w.history(0, i64::MIN).len() <= 12);
    }
}
