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
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;
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
/// [`AppState::uploads`] uploads are read at once, each streamed to a staging file (up to
/// `http.max_model_bytes`), and the file is validated by loading it before it is stored.
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
    let store = state.store.clone();
    let staged = match tokio::task::spawn_blocking(move || store.stage()).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return flag(false, e.to_string()),
        Err(e) => return flag(false, format!("upload failed: {e}")),
    };
    let (name, staged) = match read_upload(&mut multipart, state.max_model_bytes, staged).await {
        Ok(u) => u,
        Err(message) => return flag(false, message),
    };
    let store = state.store.clone();
    let ctx = context_id.clone();
    let stored = tokio::task::spawn_blocking(move || store.put_staged(&ctx, &name, staged)).await;
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

/// The one `model_file` part of the form (its file name, streamed into `staged`), every part
/// bounded: the model by `limit`, other fields by [`MAX_OTHER_FIELD_BYTES`] (read and dropped).
async fn read_upload(
    m: &mut Multipart,
    limit: usize,
    staged: tempfile::NamedTempFile,
) -> Result<(String, tempfile::NamedTempFile), String> {
    let mut name: Option<String> = None;
    let io_error = |e: std::io::Error| format!("upload failed: cannot stage the file: {e}");
    while let Some(mut field) = m
        .next_field()
        .await
        .map_err(|e| format!("malformed upload: {e}"))?
    {
        let is_model = field.name() == Some("model_file");
        if is_model && name.is_some() {
            return Err("more than one model_file field: send exactly one".into());
        }
        let mut out = if is_model {
            Some(tokio::fs::File::from_std(
                staged.reopen().map_err(io_error)?,
            ))
        } else {
            None
        };
        let cap = if is_model {
            limit
        } else {
            MAX_OTHER_FIELD_BYTES
        };
        let mut size = 0usize;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| format!("malformed upload: {e}"))?
        {
            size += chunk.len();
            if size > cap {
                return Err(if is_model {
                    format!("model file exceeds the {limit}-byte upload limit")
                } else {
                    format!("form field exceeds {MAX_OTHER_FIELD_BYTES} bytes")
                });
            }
            if let Some(out) = out.as_mut() {
                out.write_all(&chunk).await.map_err(io_error)?;
            }
        }
        if let Some(mut out) = out {
            out.flush().await.map_err(io_error)?;
            name = Some(field.file_name().unwrap_or("model.bin").to_owned());
        }
    }
    let name = name.ok_or("missing form field model_file")?;
    Ok((name, staged))
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
        let file = store.open_version(&info)?;
        Ok::<_, crate::store::StoreError>((info, file))
    })
    .await;
    match found {
        // Streamed from the file: a download holds a read buffer, not the model.
        Ok(Ok((info, file))) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    content_disposition(&info.file_name),
                ),
                (header::CONTENT_LENGTH, info.size.to_string()),
            ],
            Body::from_stream(ReaderStream::new(tokio::fs::File::from_std(file))),
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
