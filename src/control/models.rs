//! The models deployments serve: one swap handle per context id, loaded from the store on
//! first use, swapped in place when a newer version is uploaded.

use super::Manager;
use crate::config::DeploymentConfig;
use crate::model::{Model, ModelHandle};
use crate::store::{StoreError, VersionInfo};
use crate::stream::ServingModel;
use std::sync::Arc;
use tracing::info;

impl Manager {
    pub(super) fn swap_handle(&self, info: &VersionInfo, model: Model) {
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

    /// The model of a declared deployment with a `context_id`: the newest version stored under
    /// it, else its `model` file (or the built-in model), registered under the context id so
    /// that uploads swap it.
    pub(super) fn declared_model(
        &self,
        d: &DeploymentConfig,
    ) -> Result<Arc<ModelHandle<ServingModel>>, String> {
        let ctx = d.context_id.as_deref().unwrap_or_default();
        if let Ok(h) = self.model_for(ctx) {
            return Ok(h);
        }
        let m = Model::load_or_default(d.model.as_deref())
            .map_err(|err| format!("unknown model: {err}"))?;
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let h = models.entry(ctx.to_owned()).or_insert_with(|| {
            Arc::new(ModelHandle::new(Arc::new(ServingModel {
                context_id: ctx.to_owned(),
                version: m.version().to_owned(),
                model: m,
            })))
        });
        Ok(h.clone())
    }

    /// The model handle for a context id, loading the newest stored version on first use.
    pub(super) fn model_for(
        &self,
        context_id: &str,
    ) -> Result<Arc<ModelHandle<ServingModel>>, StoreError> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = models.get(context_id) {
            return Ok(h.clone());
        }
        let (info, model) = self.store.load_latest(context_id)?;
        let h = Arc::new(ModelHandle::new(Arc::new(ServingModel {
            model,
            context_id: context_id.to_owned(),
            version: info.version.to_string(),
        })));
        models.insert(context_id.to_owned(), h.clone());
        Ok(h)
    }
}
