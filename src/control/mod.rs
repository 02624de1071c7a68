//! The control plane's core: the registry of deployments ([`Manager`], here), their
//! lifecycle (`lifecycle.rs`), persistence (`persist.rs`), model hot swaps (`models.rs`),
//! API requests turned into deployments (`validate.rs`) and pre-flight checks
//! (`preflight.rs`). HTTP handlers and the control socket are thin layers over [`Manager`].
//!
//! Lifecycle: `INITIALIZING` (pre-flight: brokers reachable, topics exist, model loaded) →
//! `RUNNING`; a stop drains and commits → `STOPPED`; anything that prevents running →
//! `FAILED` with a reason. The operator's wish (`RUNNING`/`STOPPED`) is persisted, so a
//! restart brings every deployment back in the state it was left in.

mod lifecycle;
mod models;
mod persist;
mod preflight;
pub mod record;
pub mod socket;
mod validate;

use crate::config::{BatchConfig, CommitConfig, DeploymentConfig};
use crate::metrics::Metrics;
use crate::model::{Model, ModelHandle};
use crate::store::{ModelStore, StoreError, VersionInfo};
use crate::stream::{ServingModel, Stats, StatsSnapshot, StopHandles};
use chrono::Utc;
use record::{CreateRequest, DeploymentRecord, Desired, Origin};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::info;

/// Why a control operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No deployment with that id (or name).
    #[error("no deployment {0:?}")]
    NotFound(String),
    /// The request is malformed or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The operation does not apply to this deployment.
    #[error("{0}")]
    Conflict(String),
    /// The model store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Persisting state failed.
    #[error("cannot persist deployment state in {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runtime status of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Pre-flight checks running.
    Initializing,
    /// Consuming and scoring.
    Running,
    /// Stopped on request.
    Stopped,
    /// Could not run; the reason says why.
    Failed(String),
    /// Running, but nothing was delivered for `stall_timeout_ms` while records wait; the
    /// reason gives the last delivery error.
    Stalled(String),
    /// Running, but the consumer group has not given this deployment any input partition yet
    /// (the group is still joining, or other members own every partition).
    Assigning,
}

impl Status {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Initializing => "INITIALIZING",
            Status::Running => "RUNNING",
            Status::Stopped => "STOPPED",
            Status::Failed(_) => "FAILED",
            Status::Stalled(_) => "STALLED",
            Status::Assigning => "ASSIGNING",
        }
    }

    /// Why a deployment is failed or stalled.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Failed(r) | Status::Stalled(r) => Some(r),
            Status::Assigning => Some(
                "no input partition assigned yet: the consumer group is joining, or other members own every partition",
            ),
            Status::Initializing | Status::Running | Status::Stopped => None,
        }
    }
}

/// Defaults applied to deployments created over the API.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Where deployment records are kept.
    pub state_dir: PathBuf,
    /// Consumers per API-created deployment.
    pub workers: usize,
    /// Micro-batching of API-created deployments.
    pub batch: BatchConfig,
    /// Extra librdkafka settings for API-created deployments.
    pub kafka: crate::config::KafkaTable,
    /// Offset commit cadence of API-created deployments.
    pub commit: CommitConfig,
    /// Opinion windows of API-created deployments.
    pub summary: crate::opinion::SummaryConfig,
    /// Longest a stop may drain before in-flight work is abandoned uncommitted.
    pub drain_timeout: Duration,
    /// Most deployments (declared and API-created).
    pub max_deployments: usize,
    /// Longest name, in characters.
    pub max_name_chars: usize,
    /// Longest description, in characters.
    pub max_description_chars: usize,
}

/// A deployment as reported to clients.
#[derive(Debug, Clone)]
pub struct View {
    /// The persisted record.
    pub record: DeploymentRecord,
    /// Current status.
    pub status: Status,
    /// Counters since it last started.
    pub stats: StatsSnapshot,
    /// Model version serving now, if a model is loaded.
    pub model_version: Option<String>,
    /// Consumer lag summed over the owned partitions.
    pub lag: i64,
    /// Opinion windows, once it has started.
    pub opinion: Option<Arc<crate::opinion::Opinion>>,
}

struct Run {
    handles: StopHandles,
    task: JoinHandle<()>,
}

struct Entry {
    record: DeploymentRecord,
    /// For config-declared deployments: the declaration (model file, topics, settings).
    declared: Option<DeploymentConfig>,
    status: Arc<Mutex<Status>>,
    stats: Arc<Stats>,
    model: Option<Arc<ModelHandle<ServingModel>>>,
    /// Opinion windows, from the first start on.
    opinion: Option<Arc<crate::opinion::Opinion>>,
    run: Option<Run>,
}

/// Registry and lifecycle of all deployments in this process.
pub struct Manager {
    entries: tokio::sync::Mutex<BTreeMap<String, Entry>>,
    models: Mutex<HashMap<String, Arc<ModelHandle<ServingModel>>>>,
    store: Arc<ModelStore>,
    settings: ControlSettings,
    metrics: Arc<Metrics>,
}

fn set(status: &Mutex<Status>, s: Status) {
    *status.lock().unwrap_or_else(|p| p.into_inner()) = s;
}

fn get(status: &Mutex<Status>) -> Status {
    status.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Manager {
    /// Opens the registry, loading persisted deployments (not starting them yet).
    pub fn open(
        store: Arc<ModelStore>,
        settings: ControlSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Manager>, ControlError> {
        let entries = persist::load_records(&settings.state_dir)?;
        Ok(Arc::new(Manager {
            entries: tokio::sync::Mutex::new(entries),
            models: Mutex::new(HashMap::new()),
            store,
            settings,
            metrics,
        }))
    }

    /// Registers a deployment declared in configuration (id = its name).
    pub async fn declare(&self, d: DeploymentConfig) -> Result<(), ControlError> {
        let mut entries = self.entries.lock().await;
        if entries.contains_key(&d.name) {
            return Err(ControlError::Conflict(format!(
                "deployment {:?} declared twice",
                d.name
            )));
        }
        let conn = |servers: &str| record::Connection {
            kafka_brokers_sasl: servers.split(',').map(str::to_owned).collect(),
            user: None,
            password: None,
            extra: Default::default(),
        };
        let now = Utc::now();
        let record = DeploymentRecord {
            guid: d.name.clone(),
            instance_id: "local".into(),
            published_model_id: d.context_id.clone().unwrap_or_else(|| {
                d.model
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "default".into())
            }),
            name: d.name.clone(),
            description: "declared in configuration".into(),
            input: record::Input {
                connection: conn(&d.input.bootstrap_servers),
                source: record::TopicRef {
                    topic: d.input.topic.clone(),
                    kind: "kafka".into(),
                },
            },
            output: record::Output {
                connection: conn(d.output_servers()),
                target: record::TopicRef {
                    topic: d.output.topic.clone(),
                    kind: "kafka".into(),
                },
            },
            desired: Desired::Running,
            created_at: now,
            modified_at: now,
            origin: Origin::Config,
            delivery: d.delivery,
            start_from: d.start_from,
            subjects: d.subjects.clone(),
            summary_topic: d.summary.topic.clone(),
        };
        entries.insert(d.name.clone(), Entry::new(record, Some(d)));
        Ok(())
    }

    /// Starts every deployment whose desired state is RUNNING.
    pub async fn start_all(self: &Arc<Self>) {
        let mut entries = self.entries.lock().await;
        for e in entries.values_mut() {
            if e.record.desired == Desired::Running {
                self.start_entry(e);
            } else {
                set(&e.status, Status::Stopped);
                // Report the version it would run, as before the restart.
                if e.record.origin == Origin::Api {
                    e.model = self.model_for(&e.record.published_model_id).ok();
                }
            }
        }
    }

    /// Creates, persists and starts a deployment.
    pub async fn create(
        self: &Arc<Self>,
        instance_id: &str,
        published_model_id: &str,
        req: CreateRequest,
    ) -> Result<View, ControlError> {
        validate::validate_create(&req)?;
        let s = &self.settings;
        if req.name.chars().count() > s.max_name_chars {
            return Err(ControlError::Invalid(format!(
                "name is longer than {} characters",
                s.max_name_chars
            )));
        }
        if req.description.chars().count() > s.max_description_chars {
            return Err(ControlError::Invalid(format!(
                "description is longer than {} characters",
                s.max_description_chars
            )));
        }
        crate::store::validate_context_id(published_model_id)?;
        let now = Utc::now();
        let record = DeploymentRecord {
            guid: uuid::Uuid::new_v4().to_string(),
            instance_id: instance_id.to_owned(),
            published_model_id: published_model_id.to_owned(),
            name: req.name,
            description: req.description,
            input: req.input,
            output: req.output,
            desired: Desired::Running,
            created_at: now,
            modified_at: now,
            origin: Origin::Api,
            delivery: req.delivery,
            start_from: req.start_from,
            subjects: req.subjects,
            summary_topic: req.summary_topic,
        };
        // The same validation as a deployment declared in configuration.
        self.api_deployment_config(&record)
            .validate()
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let mut entries = self.entries.lock().await;
        if entries.len() >= s.max_deployments {
            return Err(ControlError::Conflict(format!(
                "this daemon already runs {} deployments (control.max_deployments): delete one first",
                entries.len()
            )));
        }
        if entries.values().any(|e| e.record.name == record.name) {
            return Err(ControlError::Conflict(format!(
                "a deployment named {:?} exists already",
                record.name
            )));
        }
        self.persist(&record)?;
        let mut entry = Entry::new(record, None);
        self.start_entry(&mut entry);
        let view = entry.view();
        entries.insert(view.record.guid.clone(), entry);
        info!(deployment = %view.record.guid, name = %view.record.name, "deployment created");
        Ok(view)
    }

    /// One deployment, by id or (for the control socket) by name.
    pub async fn get(&self, id: &str) -> Result<View, ControlError> {
        let entries = self.entries.lock().await;
        find(&entries, id).map(Entry::view)
    }

    /// Every deployment.
    pub async fn list(&self) -> Vec<View> {
        self.entries
            .lock()
            .await
            .values()
            .map(Entry::view)
            .collect()
    }

    /// Sets the desired state: RUNNING starts (from the committed offsets), STOPPED drains,
    /// commits and leaves the group. Returns once the change has taken effect.
    pub async fn set_desired(
        self: &Arc<Self>,
        id: &str,
        desired: Desired,
    ) -> Result<(), ControlError> {
        let run = {
            let mut entries = self.entries.lock().await;
            let key = find(&entries, id)?.record.guid.clone();
            let e = entries
                .get_mut(&key)
                .ok_or_else(|| ControlError::NotFound(id.to_owned()))?;
            e.record.desired = desired;
            e.record.modified_at = Utc::now();
            if e.record.origin == Origin::Api {
                self.persist(&e.record)?;
            }
            match desired {
                Desired::Running => {
                    if e.run.as_ref().is_none_or(|r| r.task.is_finished()) {
                        self.start_entry(e);
                    }
                    None
                }
                Desired::Stopped => e.run.take(),
            }
        };
        if let Some(run) = run {
            self.drain(run).await;
        }
        Ok(())
    }

    /// Stops (draining) and forgets an API-created deployment.
    pub async fn delete(&self, id: &str) -> Result<(), ControlError> {
        let entry = {
            let mut entries = self.entries.lock().await;
            let key = find(&entries, id)?.record.guid.clone();
            if entries[&key].record.origin == Origin::Config {
                return Err(ControlError::Conflict(format!(
                    "deployment {key:?} is declared in configuration; remove it there (it can be stopped here)"
                )));
            }
            entries
                .remove(&key)
                .ok_or_else(|| ControlError::NotFound(id.to_owned()))?
        };
        if let Some(run) = entry.run {
            self.drain(run).await;
        }
        self.metrics.remove_deployment(&entry.record.guid);
        let path = self.record_path(&entry.record.guid);
        std::fs::remove_file(&path).map_err(|source| ControlError::Io { path, source })?;
        info!(deployment = %entry.record.guid, "deployment deleted");
        Ok(())
    }

    /// Puts a newly stored model version into service: every running deployment of
    /// `context_id` scores its next batch with it, and deployments that failed for want of
    /// this model start.
    pub async fn swap_model(self: &Arc<Self>, info: &VersionInfo, model: Model) {
        self.swap_handle(info, model);
        let mut entries = self.entries.lock().await;
        for e in entries.values_mut() {
            let waiting = e.record.origin == Origin::Api
                && e.record.published_model_id == info.context_id
                && e.record.desired == Desired::Running
                && e.run.as_ref().is_none_or(|r| r.task.is_finished())
                && matches!(get(&e.status), Status::Failed(_));
            if waiting {
                info!(deployment = %e.record.guid, "model now available: starting");
                self.start_entry(e);
            }
        }
    }

    /// Stops every running deployment (draining), leaving desired states as they are so the
    /// next start resumes them.
    pub async fn shutdown(&self) {
        let runs: Vec<Run> = {
            let mut entries = self.entries.lock().await;
            entries.values_mut().filter_map(|e| e.run.take()).collect()
        };
        futures::future::join_all(runs.into_iter().map(|r| self.drain(r))).await;
    }
}

impl Entry {
    fn new(record: DeploymentRecord, declared: Option<DeploymentConfig>) -> Self {
        Entry {
            record,
            declared,
            status: Arc::new(Mutex::new(Status::Initializing)),
            stats: Arc::new(Stats::default()),
            model: None,
            opinion: None,
            run: None,
        }
    }

    fn view(&self) -> View {
        let stats = self.stats.snapshot();
        let status = match get(&self.status) {
            Status::Running if stats.stalled_workers > 0 => Status::Stalled(format!(
                "{} worker(s) delivered nothing for the stall timeout while records wait; last error: {}",
                stats.stalled_workers,
                self.stats.last_error().unwrap_or_else(|| "none".into())
            )),
            Status::Running if stats.assigned_partitions == 0 => Status::Assigning,
            s => s,
        };
        View {
            record: self.record.clone(),
            status,
            stats,
            model_version: self.model.as_ref().map(|m| m.current().version.clone()),
            lag: self.stats.metrics().lag_total(),
            opinion: self.opinion.clone(),
        }
    }
}

/// A deployment by id, or by name when exactly one has that name.
fn find<'a>(entries: &'a BTreeMap<String, Entry>, id: &str) -> Result<&'a Entry, ControlError> {
    if let Some(e) = entries.get(id) {
        return Ok(e);
    }
    let mut named = entries.values().filter(|e| e.record.name == id);
    match (named.next(), named.next()) {
        (Some(e), None) => Ok(e),
        (Some(_), Some(_)) => Err(ControlError::Conflict(format!(
            "more than one deployment is named {id:?}: use its id"
        ))),
        (None, _) => Err(ControlError::NotFound(id.to_owned())),
    }
}
