//! The control plane's core: the registry of deployments, their lifecycle, persistence, and
//! model hot swaps. HTTP handlers and the control socket are thin layers over [`Manager`].
//!
//! Lifecycle: `INITIALIZING` (pre-flight: brokers reachable, topics exist, model loaded) →
//! `RUNNING`; a stop drains and commits → `STOPPED`; anything that prevents running →
//! `FAILED` with a reason. The operator's wish (`RUNNING`/`STOPPED`) is persisted, so a
//! restart brings every deployment back in the state it was left in.

pub mod record;
pub mod socket;

use crate::config::{BatchConfig, CommitConfig, DeploymentConfig, InputConfig, OutputConfig};
use crate::input::InputFormat;
use crate::metrics::Metrics;
use crate::model::{Model, ModelHandle};
use crate::store::{write_atomically_with_mode, ModelStore, StoreError, VersionInfo};
use crate::stream::{run_deployment, ServingModel, Stats, StatsSnapshot, StopHandles};
use chrono::Utc;
use record::{CreateRequest, DeploymentRecord, Desired, Origin};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn};

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
    pub kafka: BTreeMap<String, String>,
    /// Offset commit cadence of API-created deployments.
    pub commit: CommitConfig,
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
        let dir = settings.state_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ControlError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut entries = BTreeMap::new();
        for f in std::fs::read_dir(&dir)
            .map_err(|source| ControlError::Io {
                path: dir.clone(),
                source,
            })?
            .flatten()
        {
            let path = f.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<DeploymentRecord>(&b)) {
                Ok(Ok(record)) => {
                    entries.insert(record.guid.clone(), Entry::new(record, None));
                }
                Ok(Err(e)) => {
                    warn!(file = %path.display(), error = %e, "skipping unreadable deployment record")
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "skipping unreadable deployment record")
                }
            }
        }
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
            published_model_id: d
                .model
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "default".into()),
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
        validate_create(&req)?;
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

    fn swap_handle(&self, info: &VersionInfo, model: Model) {
        let serving = Arc::new(ServingModel {
            model,
            context_id: info.context_id.clone(),
            version: info.version.to_string(),
        });
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        match models.get(&info.context_id) {
            // Concurrent uploads finish in any order: never put an older version back.
            Some(h)
                if h.current()
                    .version
                    .parse::<u64>()
                    .is_ok_and(|v| v >= info.version) =>
            {
                info!(context_id = %info.context_id, serving = %h.current().version, stale = info.version, "model version older than the one serving: not swapped");
            }
            Some(h) => {
                let old = h.swap(serving);
                self.metrics.model_swapped(&info.context_id);
                info!(context_id = %info.context_id, from = %old.version, to = info.version, "model swapped");
            }
            None => {
                models.insert(info.context_id.clone(), Arc::new(ModelHandle::new(serving)));
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

    async fn drain(&self, mut run: Run) {
        run.handles.stop.cancel();
        if tokio::time::timeout(self.settings.drain_timeout, &mut run.task)
            .await
            .is_err()
        {
            warn!("drain timeout reached: abandoning in-flight records uncommitted");
            run.handles.abort.cancel();
            let _ = run.task.await;
        }
    }

    fn record_path(&self, guid: &str) -> PathBuf {
        self.settings.state_dir.join(format!("{guid}.json"))
    }

    fn persist(&self, r: &DeploymentRecord) -> Result<(), ControlError> {
        let path = self.record_path(&r.guid);
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        // The record holds Kafka credentials: owner-only.
        write_atomically_with_mode(&path, &bytes, 0o600)
            .map_err(|source| ControlError::Io { path, source })
    }

    /// The model handle for a context id, loading the newest stored version on first use.
    fn model_for(&self, context_id: &str) -> Result<Arc<ModelHandle<ServingModel>>, String> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = models.get(context_id) {
            return Ok(h.clone());
        }
        let (info, model) = self
            .store
            .load_latest(context_id)
            .map_err(|e| format!("unknown model: {e}"))?;
        let h = Arc::new(ModelHandle::new(Arc::new(ServingModel {
            model,
            context_id: context_id.to_owned(),
            version: info.version.to_string(),
        })));
        models.insert(context_id.to_owned(), h.clone());
        Ok(h)
    }

    /// What the data plane runs for an entry.
    fn deployment_config(&self, e: &Entry) -> DeploymentConfig {
        match &e.declared {
            Some(d) => d.clone(),
            None => self.api_deployment_config(&e.record),
        }
    }

    /// The data-plane settings of a deployment created over the API.
    fn api_deployment_config(&self, r: &DeploymentRecord) -> DeploymentConfig {
        DeploymentConfig {
            name: r.guid.clone(),
            model: None,
            input: InputConfig {
                bootstrap_servers: r.input.connection.kafka_brokers_sasl.join(","),
                topic: r.input.source.topic.clone(),
                format: InputFormat::Json,
                text_field: "text".into(),
                max_record_bytes: 512 * 1024,
                kafka: sasl(&r.input.connection),
            },
            output: OutputConfig {
                topic: r.output.target.topic.clone(),
                dlq_topic: None,
                bootstrap_servers: Some(r.output.connection.kafka_brokers_sasl.join(",")),
                max_message_bytes: OutputConfig::DEFAULT_MAX_MESSAGE_BYTES,
                kafka: sasl(&r.output.connection),
            },
            group_id: Some(format!("streamscore-{}", r.guid)),
            workers: self.settings.workers,
            batch: self.settings.batch,
            kafka: self.settings.kafka.clone(),
            delivery: r.delivery,
            start_from: r.start_from,
            commit: self.settings.commit,
            stall_timeout_ms: DeploymentConfig::DEFAULT_STALL_TIMEOUT_MS,
        }
    }

    fn start_entry(self: &Arc<Self>, e: &mut Entry) {
        set(&e.status, Status::Initializing);
        let model = match &e.declared {
            Some(d) => match crate::cli::load_model(d.model.as_deref()) {
                Ok(m) => Ok(e.model.clone().unwrap_or_else(|| {
                    Arc::new(ModelHandle::new(Arc::new(ServingModel {
                        context_id: m.metadata().name.clone(),
                        version: m.version().to_owned(),
                        model: m,
                    })))
                })),
                Err(err) => Err(format!("unknown model: {err:#}")),
            },
            None => self.model_for(&e.record.published_model_id),
        };
        let model = match model {
            Ok(m) => m,
            Err(reason) => {
                warn!(deployment = %e.record.guid, %reason, "deployment failed");
                set(&e.status, Status::Failed(reason));
                return;
            }
        };
        e.model = Some(model.clone());
        let config = Arc::new(self.deployment_config(e));
        let handles = StopHandles::default();
        let status = e.status.clone();
        e.stats = Arc::new(Stats::new(self.metrics.deployment(&e.record.guid)));
        let stats = e.stats.clone();
        let id = e.record.guid.clone();
        let h = handles.clone();
        let task = tokio::spawn(async move {
            // Unreachable brokers or missing topics: report FAILED with the reason and keep
            // retrying (backing off to 30 s) until they answer or the deployment is stopped.
            let mut backoff = Duration::from_secs(1);
            loop {
                let attempt = tokio::select! {
                    r = preflight(&config) => r,
                    _ = h.stop.cancelled() => { set(&status, Status::Stopped); return; }
                };
                let Err(reason) = attempt else { break };
                warn!(deployment = %id, %reason, retry_in_s = backoff.as_secs(), "deployment cannot start; retrying");
                set(&status, Status::Failed(reason));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = h.stop.cancelled() => { set(&status, Status::Stopped); return; }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            set(&status, Status::Running);
            match run_deployment(config, &id, model, h, stats).await {
                Ok(()) => set(&status, Status::Stopped),
                Err(err) => set(&status, Status::Failed(err.to_string())),
            }
        });
        e.run = Some(Run { handles, task });
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

/// SASL_SSL + PLAIN settings when a connection carries a user and password, as in the seed.
fn sasl(c: &record::Connection) -> BTreeMap<String, String> {
    match (&c.user, &c.password) {
        (Some(u), Some(p)) if !u.is_empty() => BTreeMap::from([
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("sasl.mechanisms".to_string(), "PLAIN".to_string()),
            ("sasl.username".to_string(), u.clone()),
            ("sasl.password".to_string(), p.clone()),
        ]),
        _ => BTreeMap::new(),
    }
}

fn validate_create(r: &CreateRequest) -> Result<(), ControlError> {
    let bad = |m: &str| Err(ControlError::Invalid(m.to_owned()));
    if r.kind != "stream" {
        return bad("type must be \"stream\"");
    }
    if r.name.trim().is_empty() {
        return bad("name must not be empty");
    }
    for (what, c) in [
        ("input", &r.input.connection),
        ("output", &r.output.connection),
    ] {
        if c.kafka_brokers_sasl.is_empty()
            || c.kafka_brokers_sasl.iter().any(|b| b.trim().is_empty())
        {
            return Err(ControlError::Invalid(format!(
                "{what}.connection.kafka_brokers_sasl must list host:port brokers"
            )));
        }
        if c.user.is_some() != c.password.is_some() {
            return Err(ControlError::Invalid(format!(
                "{what}.connection needs both user and password, or neither"
            )));
        }
    }
    if r.input.source.kind != "kafka" || r.output.target.kind != "kafka" {
        return bad("input.source.type and output.target.type must be \"kafka\"");
    }
    if r.input.source.topic.trim().is_empty() || r.output.target.topic.trim().is_empty() {
        return bad("input.source.topic and output.target.topic must not be empty");
    }
    if r.input.source.topic == r.output.target.topic
        && r.input.connection.kafka_brokers_sasl == r.output.connection.kafka_brokers_sasl
    {
        return bad("output.target.topic must differ from input.source.topic");
    }
    Ok(())
}

/// Checks, before consuming, that the brokers answer and both topics exist.
async fn preflight(config: &DeploymentConfig) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = crate::stream::kafka::consumer_config(config, 0);
    // A metadata probe only: without a group id it never touches the consumer group.
    c.remove("group.id");
    let input = config.input.topic.clone();
    // The output and dead-letter topics are checked only when they live on the input's
    // cluster.
    let same_cluster = config.output_servers() == config.input.bootstrap_servers;
    let outputs: Vec<String> = if same_cluster {
        vec![config.output.topic.clone(), config.dlq_topic()]
    } else {
        Vec::new()
    };
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| format!("invalid Kafka settings: {e}"))?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|e| format!("brokers unreachable: {e}"))?;
        for t in std::iter::once(&input).chain(&outputs) {
            let found = md
                .topics()
                .iter()
                .any(|m| m.name() == t.as_str() && !m.partitions().is_empty());
            if !found {
                return Err(format!("topic {t:?} does not exist"));
            }
        }
        Ok(())
    })
    .await;
    outcome.map_err(|e| e.to_string())?
}
