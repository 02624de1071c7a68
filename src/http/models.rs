//! The seeds' model API: `PUT`/`GET /pm/v1/model/{contextId}?accesskey=…`.
//!
//! As in the seeds, outcomes are `200` with `{"flag": true|false, "message": …}`; a download
//! is the file itself with `Content-Disposition: attachment; filename="<uploaded name>"`.

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

/// Largest value of a form field other than `model_file`.
const MAX_OTHER_FIELD_BYTES: usize = 64 * 1024;

/// Deploys (or replaces) the model under `context_id`, hot-swapping it into running
/// deployments. The access key and the context id are checked before the body is read; at most
/// [`AppState::uploads`] uploads are read at once (each up to `http.max_model_bytes`), and the
/// file is validated by loading it before anything is stored.
pub async fn put_model(
    State(state): State<AppState>,
    Path(context_id): Path<String>,
    Query(q): Query<AccessKey>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    if let Err(e) = state.auth.check_access_key(q.accesskey.as_deref()) {
        return flag(false, e.to_string());
    }
    if let Err(e) = crate::store::validate_context_id(&context_id) {
        return flag(false, e.to_string());
    }
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return flag(
                false,
                format!("expected multipart/form-data with a model_file field: {e}"),
            )
        }
    };
    let Ok(_slot) = state.uploads.try_acquire() else {
        return flag(false, "too many uploads in progress; retry in a moment");
    };
    let (name, bytes) = match read_upload(&mut multipart, state.max_model_bytes).await {
        Ok(u) => u,
        Err(message) => return flag(false, message),
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

/// The one `model_file` part of the form (its file name and bytes), every part bounded.
async fn read_upload(m: &mut Multipart, limit: usize) -> Result<(String, Vec<u8>), String> {
    let mut upload: Option<(String, Vec<u8>)> = None;
    while let Some(mut field) = m
        .next_field()
        .await
        .map_err(|e| format!("malformed upload: {e}"))?
    {
        let is_model = field.name() == Some("model_file");
        if is_model && upload.is_some() {
            return Err("more than one model_file field: send exactly one".into());
        }
        let name = field.file_name().unwrap_or("model.bin").to_owned();
        let cap = if is_model {
            limit
        } else {
            MAX_OTHER_FIELD_BYTES
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| format!("malformed upload: {e}"))?
        {
            if bytes.len() + chunk.len() > cap {
                return Err(if is_model {
                    format!("model file exceeds the {limit}-byte upload limit")
                } else {
                    format!("form field exceeds {MAX_OTHER_FIELD_BYTES} bytes")
                });
            }
            if is_model {
                bytes.extend_from_slice(&chunk);
            } else {
                bytes.resize(bytes.len() + chunk.len(), 0);
            }
        }
        if is_model {
            upload = Some((name, bytes));
        }
    }
    upload.ok_or_else(|| "missing form field model_file".into())
}

/// `Content-Disposition` for a download: a quoted ASCII `filename` (quotes, backslashes and
/// control characters replaced) and the exact name as RFC 5987 `filename*`.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
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
                    content_disposition(&info.file_name),
                ),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Ok(Err(e)) => flag(false, e.to_string()),
        Err(e) => flag(false, format!("download failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn download_names_are_quoted_and_encoded() {
        assert_eq!(
            content_disposition("sentiment.str"),
            "attachment; filename=\"sentiment.str\"; filename*=UTF-8''sentiment.str"
        );
        assert_eq!(
            content_disposition("a \"b\";c\r\né.m"),
            "attachment; filename=\"a _b_;c___.m\"; filename*=UTF-8''a%20%22b%22%3Bc%0D%0A%C3%A9.m"
        );
    }
}
