//! OpenAI embeddings ⇄ Cohere `POST /v2/embed`, and the Cohere/Jina rerank
//! shape ⇄ Cohere `POST /v2/rerank`.

use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_sdk::openai::{Usage, embedding_base64};

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
    /// Cohere's own field, accepted from clients that know it.
    #[serde(default)]
    input_type: Option<String>,
}

/// The v2 embed request. `input_type` defaults to the adapter option's
/// (Cohere requires one for v3+ models).
pub fn embed_request(body: &str, model: &str, default_input_type: &str) -> Result<Value, String> {
    let request: EmbeddingsRequest =
        serde_json::from_str(body).map_err(|e| format!("invalid embeddings request: {e}"))?;
    let texts = match request.input {
        Value::String(text) => vec![Value::String(text)],
        Value::Array(items) if items.iter().all(Value::is_string) => items,
        _ => {
            return Err(
                "Cohere embeds text only: `input` must be a string or an array of strings".into(),
            );
        }
    };
    let mut out = json!({
        "model": model,
        "texts": texts,
        "input_type": request.input_type.as_deref().unwrap_or(default_input_type),
        "embedding_types": ["float"],
    });
    if let Some(dimensions) = request.dimensions {
        out["output_dimension"] = dimensions.into();
    }
    Ok(out)
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Embeddings,
    #[serde(default)]
    meta: Value,
}

#[derive(Deserialize)]
struct Embeddings {
    float: Vec<Vec<f64>>,
}

/// Cohere's floats as OpenAI's list of embeddings, base64-encoded when the
/// client asked for that.
pub fn embeddings_reply(
    request_body: &str,
    model: &str,
    response: &[u8],
) -> Result<(Value, Usage), String> {
    let base64 = serde_json::from_str::<EmbeddingsRequest>(request_body)
        .ok()
        .and_then(|r| r.encoding_format)
        .is_some_and(|f| f == "base64");
    let parsed: EmbedResponse = serde_json::from_slice(response)
        .map_err(|e| format!("unreadable Cohere embed response: {e}"))?;
    let data: Vec<Value> = parsed
        .embeddings
        .float
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                Value::String(embedding_base64(vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = parsed
        .meta
        .pointer("/billed_units/input_tokens")
        .and_then(Value::as_f64)
        .unwrap_or(0.0) as u64;
    let usage = Usage::new(tokens, 0);
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Ok((body, usage))
}

#[derive(Deserialize)]
struct RerankRequest {
    query: String,
    documents: Vec<Value>,
    #[serde(default)]
    top_n: Option<u64>,
    #[serde(default)]
    return_documents: Option<bool>,
    #[serde(default)]
    max_tokens_per_doc: Option<u64>,
}

impl RerankRequest {
    fn parse(body: &str) -> Result<Self, String> {
        serde_json::from_str(body).map_err(|e| format!("invalid rerank request: {e}"))
    }

    /// Each document's text: a string, or an object's `text`.
    fn texts(&self) -> Result<Vec<String>, String> {
        self.documents
            .iter()
            .enumerate()
            .map(|(i, doc)| match doc {
                Value::String(text) => Ok(text.clone()),
                other => other["text"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("documents[{i}] must be a string or have `text`")),
            })
            .collect()
    }
}

pub fn rerank_request(body: &str, model: &str) -> Result<Value, String> {
    let request = RerankRequest::parse(body)?;
    let mut out = json!({
        "model": model,
        "query": request.query,
        "documents": request.texts()?,
    });
    if let Some(top_n) = request.top_n {
        out["top_n"] = top_n.into();
    }
    if let Some(max) = request.max_tokens_per_doc {
        out["max_tokens_per_doc"] = max.into();
    }
    Ok(out)
}

/// Cohere's results, with each document's text added back when the client
/// asked for `return_documents` (Cohere v2 no longer returns them).
pub fn rerank_reply(request_body: &str, model: &str, response: &[u8]) -> Result<Value, String> {
    let request = RerankRequest::parse(request_body)?;
    let texts = request.texts()?;
    let mut parsed: Value = serde_json::from_slice(response)
        .map_err(|e| format!("unreadable Cohere rerank response: {e}"))?;
    let results = parsed["results"]
        .as_array_mut()
        .ok_or("the Cohere rerank response has no results")?;
    if request.return_documents.unwrap_or(false) {
        for result in results.iter_mut() {
            let text = result["index"]
                .as_u64()
                .and_then(|i| texts.get(i as usize))
                .cloned()
                .unwrap_or_default();
            result["document"] = json!({"text": text});
        }
    }
    Ok(json!({
        "id": parsed["id"],
        "model": model,
        "results": parsed["results"],
        "meta": parsed["meta"],
    }))
}
