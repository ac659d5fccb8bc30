//! Multipart uploads (`/v1/audio/transcriptions`): read once, spooled to disk.
//!
//! An audio file can be hundreds of megabytes, and a fallback chain may send
//! it to several providers in turn. Holding it in memory would cost its size
//! per request in flight; streaming the client's body straight upstream would
//! leave nothing to send the second candidate. So each file part is written to
//! an anonymous temporary file as it arrives, and every attempt streams it from
//! there. The file is deleted when the request ends, however it ends.

use crate::api::ApiError;
use crate::plugins::bindings;
use futures_util::TryStreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use serde_json::{Map, Value};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// The most a whole multipart request may carry.
pub const MAX_UPLOAD: u64 = 512 << 20;

/// The most one text field may carry. Text fields are held in memory (the
/// files are spooled), and the longest the speech APIs take, a prompt, is
/// a few hundred tokens.
pub const MAX_TEXT_FIELD: usize = 64 << 10;

/// The most parts one form may have: a transcription request has a file
/// and a handful of options.
pub const MAX_PARTS: usize = 64;

/// One uploaded file, on disk for the life of the request.
pub struct Upload {
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub len: u64,
    file: tempfile::NamedTempFile,
}

impl Upload {
    pub fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

/// The files of one request (none for JSON endpoints).
#[derive(Default)]
pub struct Uploads(Vec<Upload>);

impl Uploads {
    pub fn get(&self, field: &str) -> Option<&Upload> {
        self.0.iter().find(|u| u.field == field)
    }

    /// What a plugin is told of the files: names and types, never bytes.
    pub fn describe(&self) -> Vec<bindings::Upload> {
        self.0
            .iter()
            .map(|u| bindings::Upload {
                field: u.field.clone(),
                filename: u.filename.clone(),
                content_type: u.content_type.clone(),
            })
            .collect()
    }
}

/// A parsed multipart form: text fields as JSON (a field sent more than once,
/// such as `timestamp_granularities[]`, becomes an array) and spooled files.
pub struct Form {
    pub fields: Map<String, Value>,
    pub uploads: Uploads,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }
}

/// Reads a `multipart/form-data` request, spooling its files to temporary files.
pub async fn read_form(request: Request<Incoming>) -> Result<Form, ApiError> {
    let boundary = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "this endpoint takes multipart/form-data with a `file` part and a `model` field",
            )
        })?;
    if hyper::body::Body::size_hint(request.body()).lower() > MAX_UPLOAD {
        super::limits::discard(request.into_body());
        return Err(too_large(format!(
            "the upload exceeds {} MiB",
            MAX_UPLOAD >> 20
        )));
    }
    let body = BodyStream::new(request.into_body())
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(MAX_UPLOAD));
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut form = Form {
        fields: Map::new(),
        uploads: Uploads::default(),
    };
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(ApiError::bad_request("a multipart part has no name"));
        }
        parts += 1;
        if parts > MAX_PARTS {
            return Err(too_large(format!(
                "the form has more than {MAX_PARTS} parts"
            )));
        }
        match field.file_name().map(str::to_owned) {
            Some(filename) => {
                let upload = spool(field, name, filename).await?;
                form.uploads.0.push(upload);
            }
            None => {
                let text = text(field, &name).await?;
                add_text(&mut form.fields, name, text);
            }
        }
    }
    Ok(form)
}

/// Writes one file part to a temporary file as it arrives.
async fn spool(
    mut field: multer::Field<'_>,
    name: String,
    filename: String,
) -> Result<Upload, ApiError> {
    let content_type = field
        .content_type()
        .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
    let file = tempfile::NamedTempFile::new().map_err(spool_error)?;
    let mut writer = tokio::fs::File::from_std(file.reopen().map_err(spool_error)?);
    let mut len = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        len += chunk.len() as u64;
        writer.write_all(&chunk).await.map_err(spool_error)?;
    }
    writer.flush().await.map_err(spool_error)?;
    Ok(Upload {
        field: name,
        filename,
        content_type,
        len,
        file,
    })
}

/// Reads one text field, refusing it once it passes [`MAX_TEXT_FIELD`]
/// rather than holding whatever the client sends.
async fn text(mut field: multer::Field<'_>, name: &str) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(too_large(format!(
                "the field `{name}` exceeds {} KiB",
                MAX_TEXT_FIELD >> 10
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("the field `{name}` is not UTF-8 text")))
}

fn too_large(message: String) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "request_too_large",
        message,
    )
}

fn add_text(fields: &mut Map<String, Value>, name: String, text: String) {
    match fields.get_mut(&name) {
        None => {
            fields.insert(name, Value::String(text));
        }
        Some(Value::Array(values)) => values.push(Value::String(text)),
        Some(first) => {
            let first = first.take();
            fields.insert(name, Value::Array(vec![first, Value::String(text)]));
        }
    }
}

fn form_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => {
            too_large(format!("the upload exceeds {} MiB", MAX_UPLOAD >> 20))
        }
        other => ApiError::bad_request(format!("the multipart body is malformed: {other}")),
    }
}

fn spool_error(e: std::io::Error) -> ApiError {
    tracing::error!("could not spool an upload to disk: {e}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "upload_spool_failed",
        "the gateway could not store the upload; try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_become_arrays() {
        let mut fields = Map::new();
        add_text(&mut fields, "language".into(), "en".into());
        add_text(&mut fields, "g[]".into(), "word".into());
        add_text(&mut fields, "g[]".into(), "segment".into());
        add_text(&mut fields, "g[]".into(), "char".into());
        assert_eq!(fields["language"], "en");
        assert_eq!(
            fields["g[]"],
            serde_json::json!(["word", "segment", "char"])
        );
    }
}
