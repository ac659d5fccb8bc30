//! The host's HTTP client: every socket to a provider is opened here.
//!
//! One pooled client per provider, so each gets its own connect timeout and
//! keeps its connections warm. The adapter's `upstream-request` is turned into
//! a real request here and the provider's key is injected where the adapter
//! asked for it; the adapter itself never sees the key.

use crate::api::uploads::Uploads;
use crate::config::Provider;
use crate::plugins::bindings::{Body, Credential, FormPart, FormValue, UpstreamRequest};
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod body;
pub use body::{Answer, Pace, next_chunk, read_response};

/// The most of a non-streamed upstream body the gateway will hold.
pub const MAX_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    ResponseTimeout(Duration),
    #[error("the upstream went silent for {0:?} (timeouts.idle)")]
    IdleTimeout(Duration),
    #[error("the body went on for more than {0:?} (timeouts.total)")]
    TooLong(Duration),
    #[error("the body carried more than {0} bytes (timeouts.max_mib)")]
    StreamTooLarge(u64),
    #[error("the connection failed: {0}")]
    Transport(String),
    #[error("the response body exceeds {} MiB", MAX_BODY >> 20)]
    TooLarge,
    #[error("the adapter built an unusable request: {0}")]
    Invalid(String),
    /// A plugin may build any URL, but the key goes only where the
    /// provider's fragment says the provider is.
    #[error(
        "the adapter asked to send the provider's key to {to}, not to its base_url's origin {base}; nothing was sent"
    )]
    KeyElsewhere { to: String, base: String },
}

impl UpstreamError {
    /// Whether the provider cannot have seen the request.
    pub fn before_sending(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_)
                | UpstreamError::Invalid(_)
                | UpstreamError::KeyElsewhere { .. }
        )
    }
}

/// The provider's key and the one origin it may be sent to.
pub struct Credentials<'a> {
    pub key: &'a str,
    /// The provider's `base_url`, parsed.
    pub origin: &'a reqwest::Url,
}

/// Pooled clients: per provider, one for each serving lane (see `lanes`),
/// so a pooled connection is always driven by the thread that uses it.
pub struct Upstreams {
    pools: HashMap<String, Pool>,
}

/// One provider's clients, and its `base_url` parsed once: the origin its
/// key may go to.
struct Pool {
    lanes: Vec<reqwest::Client>,
    base: Option<reqwest::Url>,
}

impl Upstreams {
    pub fn new(providers: &[Arc<Provider>]) -> anyhow::Result<Self> {
        let mut pools = HashMap::new();
        for provider in providers.iter().filter(|p| p.enabled()) {
            let lanes = (0..crate::lanes::count())
                .map(|_| client_for(provider))
                .collect::<Result<_, _>>()?;
            let base = reqwest::Url::parse(&provider.base_url).ok();
            pools.insert(provider.name.clone(), Pool { lanes, base });
        }
        Ok(Upstreams { pools })
    }

    /// Sends the request and waits for the response headers. `uploads` are
    /// the client's files a multipart body may refer to.
    pub async fn send(
        &self,
        provider: &Provider,
        request: UpstreamRequest,
        uploads: &Uploads,
    ) -> Result<reqwest::Response, UpstreamError> {
        let (client, base) = self.client(provider)?;
        let credentials = match (&provider.api_key, base) {
            (Some(key), Some(origin)) => Some(Credentials {
                key: key.expose(),
                origin,
            }),
            _ => None,
        };
        let request = build(client, credentials, request, uploads)?;
        execute(client, provider, request).await
    }

    /// A plain `GET` of `url` with the provider's key as a bearer token
    /// (listing a speech backend's voices).
    pub async fn get(
        &self,
        provider: &Provider,
        url: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = UpstreamRequest {
            method: "GET".into(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Body::Empty,
            credential: Credential::Bearer,
            response: crate::plugins::bindings::ResponseKind::Json,
        };
        self.send(provider, request, &Uploads::default()).await
    }

    /// The calling lane's client for `provider`, and its parsed `base_url`.
    fn client(
        &self,
        provider: &Provider,
    ) -> Result<(&reqwest::Client, Option<&reqwest::Url>), UpstreamError> {
        let pool = self.pools.get(&provider.name).ok_or_else(|| {
            UpstreamError::Invalid(format!("provider {} is not enabled", provider.name))
        })?;
        let client = &pool.lanes[crate::lanes::current() % pool.lanes.len()];
        Ok((client, pool.base.as_ref()))
    }
}

/// A pooled client with the provider's connect timeout.
fn client_for(provider: &Provider) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(provider.timeouts.connect())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        // A provider's redirect is an answer to report, not to follow
        // with the key attached.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` and waits for the response headers, within the
/// provider's response timeout.
async fn execute(
    client: &reqwest::Client,
    provider: &Provider,
    request: reqwest::Request,
) -> Result<reqwest::Response, UpstreamError> {
    let timeout = provider.timeouts.response();
    match tokio::time::timeout(timeout, client.execute(request)).await {
        Err(_) => Err(UpstreamError::ResponseTimeout(timeout)),
        Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(describe(e))),
        Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::ResponseTimeout(timeout)),
        Ok(Err(e)) => Err(UpstreamError::Transport(describe(e))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The HTTP request the gateway would send for `request` with `key` to a
/// provider at `base_url`, built by the same code as a real attempt;
/// `tollgate plugin test` compares it with a recorded case. A multipart
/// body's uploads are missing here, so the caller takes the body out first.
pub fn outgoing(
    request: UpstreamRequest,
    key: &str,
    base_url: &str,
) -> Result<reqwest::Request, UpstreamError> {
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| UpstreamError::Invalid(describe(e)))?;
    let origin = reqwest::Url::parse(base_url)
        .map_err(|e| UpstreamError::Invalid(format!("bad base_url `{base_url}`: {e}")))?;
    let credentials = Credentials {
        key,
        origin: &origin,
    };
    build(&client, Some(credentials), request, &Uploads::default())
}

fn build(
    client: &reqwest::Client,
    credentials: Option<Credentials<'_>>,
    request: UpstreamRequest,
    uploads: &Uploads,
) -> Result<reqwest::Request, UpstreamError> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| UpstreamError::Invalid(format!("bad method `{}`", request.method)))?;
    let mut url = reqwest::Url::parse(&request.url)
        .map_err(|e| UpstreamError::Invalid(format!("bad url `{}`: {e}", request.url)))?;
    let key = match credentials {
        Some(c) if !matches!(request.credential, Credential::None) => {
            if !same_origin(&url, c.origin) {
                return Err(UpstreamError::KeyElsewhere {
                    to: url.origin().ascii_serialization(),
                    base: c.origin.origin().ascii_serialization(),
                });
            }
            Some(c.key)
        }
        _ => None,
    };
    if let (Credential::Query(name), Some(key)) = (&request.credential, key) {
        url.query_pairs_mut().append_pair(name, key);
    }
    let mut builder = client.request(method, url);
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| UpstreamError::Invalid(format!("bad header name `{name}`")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| UpstreamError::Invalid(format!("bad value for header `{name}`")))?;
        builder = builder.header(name, value);
    }
    match (&request.credential, key) {
        (Credential::Bearer, Some(key)) => builder = builder.bearer_auth(key),
        (Credential::Header(name), Some(key)) => builder = builder.header(name.as_str(), key),
        // No key, no credential, or already placed in the URL above.
        _ => {}
    }
    builder = match request.body {
        Body::Empty => builder,
        Body::Bytes(bytes) => builder.body(bytes),
        Body::Multipart(parts) => builder.multipart(form(parts, uploads)?),
    };
    builder
        .build()
        .map_err(|e| UpstreamError::Invalid(describe(e)))
}

/// Scheme, host and port alike (a port left out counts as the scheme's own).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A multipart form whose file parts stream from the spooled uploads.
fn form(
    parts: Vec<FormPart>,
    uploads: &Uploads,
) -> Result<reqwest::multipart::Form, UpstreamError> {
    let mut form = reqwest::multipart::Form::new();
    for part in parts {
        form = match part.value {
            FormValue::Text(text) => form.text(part.name, text),
            FormValue::Upload(field) => {
                let upload = uploads.get(&field).ok_or_else(|| {
                    UpstreamError::Invalid(format!("the client uploaded no file as `{field}`"))
                })?;
                let file = std::fs::File::open(upload.path())
                    .map_err(|e| UpstreamError::Invalid(format!("the upload is gone: {e}")))?;
                let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
                let body = reqwest::Body::wrap_stream(stream);
                let file_part = reqwest::multipart::Part::stream_with_length(body, upload.len)
                    .file_name(upload.filename.clone())
                    .mime_str(&upload.content_type)
                    .map_err(|e| UpstreamError::Invalid(describe(e)))?;
                form.part(part.name, file_part)
            }
        };
    }
    Ok(form)
}

/// The error and its causes, without the URL (it may carry a key).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(credential: Credential) -> UpstreamRequest {
        UpstreamRequest {
            method: "POST".into(),
            url: "https://api.example.com/v1/chat/completions?alt=sse".into(),
            headers: vec![("x-extra".into(), "1".into())],
            body: Body::Bytes(b"{}".to_vec()),
            credential,
            response: crate::plugins::bindings::ResponseKind::Json,
        }
    }

    /// The test key, bound for `origin`.
    fn keyed_for(origin: &reqwest::Url) -> Option<Credentials<'_>> {
        Some(Credentials {
            key: "sk-place-me",
            origin,
        })
    }

    #[test]
    fn the_key_goes_where_the_adapter_asked() {
        let client = reqwest::Client::new();
        let none = Uploads::default();
        let origin = reqwest::Url::parse("https://api.example.com/v1").unwrap();
        let keyed = || keyed_for(&origin);
        let built = build(&client, keyed(), request(Credential::Bearer), &none).unwrap();
        assert_eq!(built.headers()["authorization"], "Bearer sk-place-me");
        assert_eq!(built.headers()["x-extra"], "1");

        let built = build(
            &client,
            keyed(),
            request(Credential::Header("x-api-key".into())),
            &none,
        )
        .unwrap();
        assert_eq!(built.headers()["x-api-key"], "sk-place-me");
        assert!(built.headers().get("authorization").is_none());

        let built = build(
            &client,
            keyed(),
            request(Credential::Query("key".into())),
            &none,
        )
        .unwrap();
        assert_eq!(built.url().query(), Some("alt=sse&key=sk-place-me"));
        assert_eq!(built.headers()["x-extra"], "1");

        let built = build(&client, None, request(Credential::Bearer), &none).unwrap();
        assert!(built.headers().get("authorization").is_none());
        let built = build(
            &client,
            None,
            request(Credential::Query("key".into())),
            &none,
        )
        .unwrap();
        assert_eq!(built.url().query(), Some("alt=sse"));
    }

    #[test]
    fn the_key_goes_only_to_the_providers_own_origin() {
        let client = reqwest::Client::new();
        let none = Uploads::default();
        let origin = reqwest::Url::parse("https://api.example.com/v1").unwrap();
        let keyed = || keyed_for(&origin);
        let to = |url: &str, credential: Credential| UpstreamRequest {
            url: url.into(),
            ..request(credential)
        };
        // The same origin, any path, the default port spelt out: fine.
        for url in [
            "https://api.example.com/other/path",
            "https://api.example.com:443/v1/x",
        ] {
            assert!(
                build(&client, keyed(), to(url, Credential::Bearer), &none).is_ok(),
                "{url}"
            );
        }
        // Another host, scheme or port: refused, naming both origins, never the key.
        for (url, shown) in [
            ("https://evil.example/steal", "https://evil.example"),
            ("http://api.example.com/v1", "http://api.example.com"),
            (
                "https://api.example.com:8443/v1",
                "https://api.example.com:8443",
            ),
            (
                "https://api.example.com.evil.example/v1",
                "https://api.example.com.evil.example",
            ),
        ] {
            for credential in [
                Credential::Bearer,
                Credential::Header("x-api-key".into()),
                Credential::Query("key".into()),
            ] {
                let error = build(&client, keyed(), to(url, credential), &none).unwrap_err();
                let text = error.to_string();
                assert!(error.before_sending(), "{text}");
                assert!(
                    text.contains(&format!(
                        "key to {shown}, not to its base_url's origin https://api.example.com;"
                    )),
                    "{text}"
                );
                assert!(!text.contains("sk-place-me"), "{text}");
            }
        }
        // A request that asks for no key may go anywhere (a local backend's
        // control call, a public download).
        assert!(
            build(
                &client,
                keyed(),
                to("https://elsewhere.example/", Credential::None),
                &none
            )
            .is_ok()
        );
    }
}
