//! The seeds' model API: `PUT`/`GET /pm/v1/model/{contextId}?accesskey=…`.
//!
//! As in the seeds, outcomes are `200` with `{"flag": true|false, "message": …}`; a download
//! is the file itself with `Content-Disposition: attachment; filename=<uploaded name>`.

use super::AppState;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

/// The `accesskey` query parameter.
#[derive(Deserialize)]
pub struct AccessKey {
    accesskey: Option<String>,
}

fn flag(ok: bool, message: impl Into<String>) -> Response {
    Json(json!({"flag": ok, "message": message.into()})).into_response()
}

/// Deploys (or replaces) the model under `context_id`, hot-swapping it into running
/// deployments. The file is validated by loading it before anything is stored.
pub async fn put_model(
    State(state): State<AppState>,
    Path(context_id): Path<String>,
    Query(q): Query<AccessKey>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    // The body is read (bounded) before any refusal, so every client gets the seeds' JSON
    // answer rather than a connection cut mid-upload.
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return flag(
                false,
                format!("expected multipart/form-data with a model_file field: {e}"),
            )
        }
    };
    let limit = state.max_model_bytes;
    let mut upload: Option<(String, Vec<u8>)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return flag(false, format!("malformed upload: {e}")),
        };
        if field.name() != Some("model_file") {
            continue;
        }
        let name = field.file_name().unwrap_or("model.bin").to_owned();
        let mut field = field;
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > limit {
                        return flag(
                            false,
                            format!("model file exceeds the {limit}-byte upload limit"),
                        );
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return flag(false, format!("malformed upload: {e}")),
            }
        }
        upload = Some((name, bytes));
        break;
    }
    if let Err(e) = state.auth.check_access_key(q.accesskey.as_deref()) {
        return flag(false, e.to_string());
    }
    if let Err(e) = crate::store::validate_context_id(&context_id) {
        return flag(false, e.to_string());
    }
    let Some((name, bytes)) = upload else {
        return flag(false, "missing form field model_file");
    };
    let store = state.store.clone();
    let ctx = context_id.clone();
    let stored = tokio::task::spawn_blocking(move || store.put(&ctx, &name, &bytes)).await;
    match stored {
        Ok(Ok((info, model))) => {
            info!(context_id = %info.context_id, version = info.version, file = %info.file_name, "model stored");
            state.manager.swap_model(&info, model).await;
            flag(
                true,
                format!(
                    "model {} deployed as version {}",
                    info.context_id, info.version
                ),
            )
        }
        Ok(Err(e)) => flag(false, e.to_string()),
        Err(e) => flag(false, format!("upload failed: {e}")),
    }
}

/// Returns a copy of the newest model file under `context_id`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(context_id): Path<String>,
    Query(q): Query<AccessKey>,
) -> Response {
    if let Err(e) = state.auth.check_access_key(q.accesskey.as_deref()) {
        return flag(false, e.to_string());
    }
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || {
        let info = store.latest(&context_id)?;
        let bytes = store.read(&info)?;
        Ok::<_, crate::store::StoreError>((info, bytes))
    })
    .await;
    match found {
        Ok(Ok((info, bytes))) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename={}", info.file_name),
                ),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Ok(Err(e)) => flag(false, e.to_string()),
        Err(e) => flag(false, format!("download failed: {e}")),
    }
}
