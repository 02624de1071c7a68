//! Starting and stopping a deployment: pre-flight checks retried with back-off (FAILED with
//! the reason meanwhile), then the data plane; a stop drains within the drain timeout.

use super::preflight::preflight;
use super::{set, Entry, Manager, Run, Status};
use crate::model::ModelHandle;
use crate::opinion::Opinion;
use crate::stream::{run_deployment, ServingModel, Stats, StopHandles};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Longest a stop waits for a deployment after abandoning its in-flight records.
const ABORT_GRACE: Duration = Duration::from_secs(5);

impl Manager {
    pub(super) async fn drain(&self, mut run: Run) {
        run.handles.stop.cancel();
        if tokio::time::timeout(self.settings.drain_timeout, &mut run.task)
            .await
            .is_err()
        {
            warn!("drain timeout reached: abandoning in-flight records uncommitted");
            run.handles.abort.cancel();
            if tokio::time::timeout(ABORT_GRACE, &mut run.task)
                .await
                .is_err()
            {
                // Nothing is committed past this point; the workers' threads end on their own
                // (or with the process).
                warn!(
                    grace_ms = ABORT_GRACE.as_millis() as u64,
                    "the deployment did not stop after the abort; leaving it behind"
                );
            }
        }
    }

    pub(super) fn start_entry(self: &Arc<Self>, e: &mut Entry) {
        set(&e.status, Status::Initializing);
        let model = match &e.declared {
            Some(d) if d.context_id.is_some() => self.declared_model(d),
            Some(d) => match crate::model::Model::load_or_default(d.model.as_deref()) {
                Ok(m) => Ok(e.model.clone().unwrap_or_else(|| {
                    Arc::new(ModelHandle::new(Arc::new(ServingModel {
                        context_id: m.metadata().name.clone(),
                        version: m.version().to_owned(),
                        model: m,
                    })))
                })),
                Err(err) => Err(format!(
                    "unknown model: {}: {err}",
                    d.model
                        .as_ref()
                        .map_or("the built-in model".into(), |p| p.display().to_string())
                )),
            },
            None => self
                .model_for(&e.record.published_model_id)
                .map_err(|err| format!("unknown model: {err}")),
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
        // Kept across stops and starts: the page keeps its history.
        let opinion = match &e.opinion {
            Some(o) => o.clone(),
            None => match Opinion::new(&config.subjects, &config.summary) {
                Ok(o) => e.opinion.insert(Arc::new(o)).clone(),
                Err(err) => {
                    set(&e.status, Status::Failed(format!("subjects: {err}")));
                    return;
                }
            },
        };
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
                set(&status, Status::Failed(reason.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = h.stop.cancelled() => { set(&status, Status::Stopped); return; }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            set(&status, Status::Running);
            match run_deployment(config, &id, model, h, stats, opinion).await {
                Ok(()) => set(&status, Status::Stopped),
                Err(err) => set(&status, Status::Failed(err.to_string())),
            }
        });
        e.run = Some(Run { handles, task });
    }
}
