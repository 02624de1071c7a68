//! The daemon assembled: model store, deployment registry, metrics, HTTP API and control
//! socket, run until a shutdown signal, then drained. `streamscore run` calls [`run`]; tests
//! can start it in-process with a listener and a cancellation token.

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::control::{socket, ControlSettings, Manager};
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::store::ModelStore;
use anyhow::Context;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Reads a secret from a file, trimmed.
fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

pub fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    let a = &settings.auth;
    let mut keys: Vec<String> = a
        .access_keys
        .iter()
        .map(|k| k.expose_secret().to_owned())
        .collect();
    if let Some(f) = &a.access_keys_file {
        keys.extend(read_secret(f)?.lines().map(|l| l.trim().to_owned()));
    }
    let signing = match &a.signing_key_file {
        Some(f) => read_secret(f)?,
        None => a.signing_key.expose_secret().to_owned(),
    };
    if signing.is_empty() {
        warn!("no auth.signing_key: tokens are signed with a random key and die with this process");
    }
    if keys.iter().all(String::is_empty) {
        warn!("no auth.access_keys: the model API refuses every request");
    }
    Ok(Authenticator::new(
        keys,
        a.users.clone(),
        signing.as_bytes(),
        a.token_ttl_s as i64,
    ))
}

/// Runs the daemon until `shutdown` is cancelled, then drains every deployment (cut short when
/// `abort` is cancelled). Serves the HTTP API on `listener` (none: no API) and the control
/// socket of `settings.control.socket` (empty: none). Returns whether every server task ended
/// cleanly.
pub async fn run(
    settings: Settings,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<bool> {
    let stop = CancellationToken::new();
    let store = Arc::new(ModelStore::open(&settings.state.dir.join("models"))?);
    let metrics = Arc::new(Metrics::new());
    let manager = Manager::open(
        store.clone(),
        ControlSettings {
            state_dir: settings.state.dir.join("deployments"),
            workers: settings.control.workers,
            batch: settings.control.batch,
            kafka: settings.control.kafka.clone(),
            commit: settings.control.commit,
            summary: settings.control.summary.clone(),
            drain_timeout: Duration::from_millis(settings.shutdown.drain_timeout_ms),
            max_deployments: settings.control.max_deployments,
            max_name_chars: settings.control.max_name_chars,
            max_description_chars: settings.control.max_description_chars,
        },
        metrics.clone(),
    )?;
    for d in settings.deployments.clone() {
        info!(deployment = %d.name, input = %d.input.topic, output = %d.output.topic, workers = d.workers, "declared deployment");
        manager.declare(d).await?;
    }
    manager.start_all().await;

    let mut tasks = tokio::task::JoinSet::new();
    let path = settings.control.socket.clone();
    let control = if path.as_os_str().is_empty() {
        None
    } else {
        Some(socket::bind(&path).with_context(|| format!("control socket {}", path.display()))?)
    };
    if let Some(listener) = listener {
        info!(address = %listener.local_addr()?, "HTTP API listening");
        let auth = Arc::new(authenticator(&settings)?);
        let app = router(AppState {
            login: Arc::new(crate::http::throttle::LoginGate::new(auth.clone())),
            auth,
            store: store.clone(),
            manager: manager.clone(),
            metrics: metrics.clone(),
            uploads: Arc::new(tokio::sync::Semaphore::new(2)),
            max_model_bytes: settings.http.max_model_bytes,
            streams: Arc::new(tokio::sync::Semaphore::new(
                crate::http::opinion::MAX_STREAMS,
            )),
            closing: stop.clone(),
        });
        let stop = stop.clone();
        tasks.spawn(async move {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            r.context("HTTP server")
        });
    }
    if let Some(listener) = control {
        let (manager, stop) = (manager.clone(), stop.clone());
        tasks.spawn(async move {
            socket::serve(listener, &path, manager, stop)
                .await
                .context("control socket")
        });
    }

    shutdown.cancelled().await;
    let drain = Duration::from_millis(settings.shutdown.drain_timeout_ms);
    info!(
        drain_timeout_ms = drain.as_millis() as u64,
        "shutdown requested: draining"
    );
    stop.cancel();
    tokio::select! {
        _ = manager.shutdown() => {}
        _ = abort.cancelled() => warn!("second signal: stopping now"),
    }
    let mut failed = false;
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            error!(error = %e, "server task failed");
            failed = true;
        }
    }
    info!("streamscore stopped");
    Ok(!failed)
}
