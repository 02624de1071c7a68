//! Bounds on password checks, which are deliberately expensive (Argon2: ~19 MiB and tens of
//! milliseconds each) and can be asked for by anyone who can reach the API:
//! - they run on [`CONCURRENT_CHECKS`] threads of their own, each reusing one Argon2 working
//!   memory ([`PasswordMemory`]): allocating it per check (19 MiB) left memory behind in the
//!   allocator, and a flood of 1,000 bad logins grew the peak RSS by 80–200 MB;
//! - at most [`QUEUED_CHECKS`] more wait; beyond that a login is refused at once with 503 (a
//!   refused request holds no hash state); a login waits at most [`CHECK_WAIT`] (then 503),
//!   and a queued check whose login stopped waiting is dropped unhashed;
//! - a client address with [`MAX_FAILURES`] failed logins within [`FAILURE_WINDOW`] is refused
//!   with 429 until the window ends, before any hashing. At most [`TRACKED_ADDRESSES`]
//!   addresses are remembered; past that the oldest entries are dropped.

use crate::auth::{AuthError, Authenticator, PasswordMemory};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Password-checking threads.
pub const CONCURRENT_CHECKS: usize = 2;
/// Password checks waiting for a thread; more are refused with 503.
pub const QUEUED_CHECKS: usize = 16;
/// Longest a login waits for its check (queue and hashing).
pub const CHECK_WAIT: Duration = Duration::from_secs(5);
/// Failed logins per address and window before 429.
pub const MAX_FAILURES: u32 = 5;
/// The failure-counting window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered.
pub const TRACKED_ADDRESSES: usize = 10_000;

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many checks running and waiting: try again shortly (503).
    Busy,
    /// Too many failures from this address: try again after this long (429).
    TooManyFailures(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// One password check for the checking threads.
struct Job {
    user: String,
    password: String,
    reply: oneshot::Sender<Result<(), AuthError>>,
}

/// The gate every password check passes, and the threads that run them.
pub struct LoginGate {
    jobs: crossbeam_channel::Sender<Job>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Passwords hashed so far (counted before each hash starts).
    hashed: Arc<AtomicU64>,
}

impl std::fmt::Debug for LoginGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGate")
            .field("queued", &self.jobs.len())
            .field("hashed", &self.hashed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl LoginGate {
    /// Starts the checking threads for `auth` (they end when the gate is dropped).
    pub fn new(auth: Arc<Authenticator>) -> LoginGate {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(QUEUED_CHECKS);
        let hashed = Arc::new(AtomicU64::new(0));
        for i in 0..CONCURRENT_CHECKS {
            let (rx, auth, hashed) = (rx.clone(), auth.clone(), hashed.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("ss-password-{i}"))
                .spawn(move || {
                    let mut memory = PasswordMemory::default();
                    for job in rx {
                        // Its login gave up waiting (timed out or disconnected): a flood
                        // of abandoned checks must not delay the logins still waiting.
                        if job.reply.is_closed() {
                            continue;
                        }
                        hashed.fetch_add(1, Relaxed);
                        let outcome =
                            auth.check_password_with(&job.user, &job.password, &mut memory);
                        let _ = job.reply.send(outcome);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-checking thread");
            }
        }
        LoginGate {
            jobs,
            failures: Mutex::new(HashMap::new()),
            hashed,
        }
    }

    /// Checks `user`'s password for a login from `client`: the check's outcome, or why it
    /// was not made. Failures are counted per address.
    pub async fn check(
        &self,
        client: IpAddr,
        user: String,
        password: String,
    ) -> Result<Result<(), AuthError>, Refusal> {
        if let Some(wait) = self.blocked_for(client, Instant::now()) {
            return Err(Refusal::TooManyFailures(wait));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                user,
                password,
                reply,
            })
            .map_err(|_| Refusal::Busy)?;
        let outcome = match tokio::time::timeout(CHECK_WAIT, answer).await {
            Ok(Ok(outcome)) => outcome,
            _ => return Err(Refusal::Busy),
        };
        self.record_at(client, outcome.is_ok(), Instant::now());
        Ok(outcome)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn blocked_for(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let f = *self.lock().get(&client)?;
        let ends = f.since + FAILURE_WINDOW;
        (f.count >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    fn record_at(&self, client: IpAddr, ok: bool, now: Instant) {
        let mut map = self.lock();
        if ok {
            map.remove(&client);
            return;
        }
        if map.len() >= TRACKED_ADDRESSES && !map.contains_key(&client) {
            // Expired windows first; if none, the oldest half.
            map.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
            if map.len() >= TRACKED_ADDRESSES {
                let mut ages: Vec<Instant> = map.values().map(|f| f.since).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, f| f.since > cut);
            }
        }
        let f = map.entry(client).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(f.since) >= FAILURE_WINDOW {
            *f = Failures {
                count: 0,
                since: now,
            };
        }
        f.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn gate() -> LoginGate {
        let hash = crate::auth::hash_password("right").unwrap();
        let users = std::collections::BTreeMap::from([("u".to_string(), hash)]);
        LoginGate::new(Arc::new(Authenticator::new(vec![], users, b"k", 60)))
    }

    #[tokio::test]
    async fn checks_whose_logins_gave_up_are_skipped() {
        let g = gate();
        let client = ip(9);
        // Half a queue of checks nobody waits for any more (room left for the next login).
        for _ in 0..QUEUED_CHECKS / 2 {
            let (reply, answer) = oneshot::channel();
            drop(answer);
            let job = Job {
                user: "u".into(),
                password: "wrong".into(),
                reply,
            };
            g.jobs.send(job).unwrap();
        }
        assert!(matches!(
            g.check(client, "u".into(), "right".into()).await,
            Ok(Ok(()))
        ));
        // The login's job came after the abandoned ones (one queue, taken in order), so each
        // of them was taken, and counted had it been hashed, before the login's answer.
        assert_eq!(g.hashed.load(Relaxed), 1, "abandoned checks were hashed");
    }

    #[test]
    fn failures_block_an_address_for_the_rest_of_the_window_only() {
        let g = gate();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(g.blocked_for(ip(1), t0), None);
            g.record_at(ip(1), false, t0);
        }
        let wait = g.blocked_for(ip(1), t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, FAILURE_WINDOW - Duration::from_secs(10));
        assert_eq!(
            g.blocked_for(ip(2), t0),
            None,
            "other addresses are not blocked"
        );
        assert_eq!(g.blocked_for(ip(1), t0 + FAILURE_WINDOW), None);
        g.record_at(ip(1), true, t0);
        assert_eq!(g.blocked_for(ip(1), t0), None, "a success forgets failures");
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let g = gate();
        let t0 = Instant::now();
        for i in 0..(TRACKED_ADDRESSES as u32 + 100) {
            let a = IpAddr::from((i + 1).to_be_bytes());
            g.record_at(a, false, t0 + Duration::from_micros(i as u64));
        }
        assert!(g.lock().len() <= TRACKED_ADDRESSES);
    }

    #[tokio::test]
    async fn checks_are_made_counted_and_refused_past_the_queue() {
        let g = Arc::new(gate());
        let ok = g.check(ip(1), "u".into(), "right".into()).await;
        assert_eq!(ok, Ok(Ok(())));
        let bad = g.check(ip(1), "u".into(), "wrong".into()).await;
        assert_eq!(bad, Ok(Err(AuthError::BadPassword)));
        // Far more at once than threads and queue: some are refused as busy, none hang.
        let all = futures::future::join_all(
            (0..(CONCURRENT_CHECKS + QUEUED_CHECKS) * 3)
                .map(|i| g.check(ip(10 + (i % 200) as u8), "u".into(), "wrong".into())),
        )
        .await;
        assert!(all.contains(&Err(Refusal::Busy)), "{all:?}");
        assert!(all.contains(&Ok(Err(AuthError::BadPassword))), "{all:?}");
    }
}
