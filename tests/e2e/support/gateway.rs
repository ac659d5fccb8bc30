//! Runs the real `tollgate` binary against a providers folder written for one
//! test, and talks to it over HTTP.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A provider fragment for a test: every model maps to the mock's `model`.
pub fn fragment(name: &str, base_url: &str, aliases: &[(&str, &str)], extra: &str) -> String {
    let mut yaml = format!(
        "name: {name}\nflag: {flag}\nadapter: openai\nbase_url: {base_url}\napi_key: ${{{flag}_API_KEY}}\ntier: free\ntimeouts: {{ connect: 2, response: 2, idle: 2 }}\n{extra}\nmodels:\n",
        flag = name.to_uppercase()
    );
    for (alias, model) in aliases {
        yaml.push_str(&format!(
            "  - alias: {alias}\n    model: {model}\n    mode: chat\n"
        ));
    }
    yaml
}

/// A provider fragment with any adapter and modes: `models` are
/// (alias, upstream model, mode). Enable it with [`Setup::enable`].
pub fn fragment_of(
    name: &str,
    adapter: &str,
    base_url: &str,
    models: &[(&str, &str, &str)],
    extra: &str,
) -> String {
    let mut yaml = format!(
        "name: {name}\nflag: {flag}\nadapter: {adapter}\nbase_url: {base_url}\napi_key: ${{{flag}_API_KEY}}\ntier: free\ntimeouts: {{ connect: 2, response: 5, idle: 5 }}\n{extra}\nmodels:\n",
        flag = name.to_uppercase()
    );
    for (alias, model, mode) in models {
        yaml.push_str(&format!(
            "  - {{ alias: {alias}, model: {model}, mode: {mode} }}\n"
        ));
    }
    yaml
}

#[derive(Default)]
pub struct Setup {
    files: Vec<(String, String)>,
    env: Vec<(String, String)>,
    plugins: Vec<(String, PathBuf)>,
    plugin_files: Vec<(String, Vec<u8>)>,
    dotenv: Option<String>,
    args: Vec<String>,
    capture_logs: bool,
}

impl Setup {
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider fragment, enabled with flag `NAME=1` and key `NAME_API_KEY`.
    pub fn provider(self, name: &str, base_url: &str, aliases: &[(&str, &str)]) -> Self {
        self.provider_with(name, base_url, aliases, "")
    }

    /// A provider fragment with extra top-level YAML (limits, quota), enabled.
    pub fn provider_with(
        mut self,
        name: &str,
        base_url: &str,
        aliases: &[(&str, &str)],
        extra: &str,
    ) -> Self {
        let text = fragment(name, base_url, aliases, extra);
        self.files.push((format!("{name}.yaml"), text));
        self.enable(name)
    }

    /// A fragment from [`fragment_of`], enabled.
    pub fn fragment(
        self,
        name: &str,
        adapter: &str,
        base_url: &str,
        models: &[(&str, &str, &str)],
        extra: &str,
    ) -> Self {
        let text = fragment_of(name, adapter, base_url, models, extra);
        self.file(&format!("{name}.yaml"), &text).enable(name)
    }

    /// Sets a provider's flag `NAME=1` and key `NAME_API_KEY`.
    pub fn enable(self, name: &str) -> Self {
        let flag = name.to_uppercase();
        self.env(&flag, "1").env(
            &format!("{flag}_API_KEY"),
            &format!("sk-test-{name}-secret"),
        )
    }

    /// A provider fragment without its flag or key set.
    pub fn disabled_provider(
        mut self,
        name: &str,
        base_url: &str,
        aliases: &[(&str, &str)],
    ) -> Self {
        let text = fragment(name, base_url, aliases, "");
        self.files.push((format!("{name}.yaml"), text));
        self
    }

    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    pub fn fallbacks(self, text: &str) -> Self {
        self.file("fallbacks.yaml", text)
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Installs a fixture plugin (`faulty`) under the given name.
    pub fn plugin(mut self, fixture: &str, as_name: &str) -> Self {
        let path = super::fixtures::fixture(fixture);
        self.plugins.push((as_name.to_owned(), path));
        self
    }

    /// Writes a `.env` file in the folder the gateway starts in.
    pub fn dotenv(mut self, text: &str) -> Self {
        self.dotenv = Some(text.to_owned());
        self
    }

    /// Passes more arguments to `tollgate serve`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Writes the gateway's log (stderr) to `gateway.log` in its folder,
    /// at `info`, for [`Gateway::logs`].
    pub fn capture_logs(mut self) -> Self {
        self.capture_logs = true;
        self.env("TOLLGATE_LOG", "info")
    }

    /// Writes `NAME.wasm` with these bytes into the plugins folder.
    pub fn plugin_bytes(mut self, name: &str, bytes: &[u8]) -> Self {
        self.plugin_files.push((name.to_owned(), bytes.to_vec()));
        self
    }

    pub fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("providers");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&plugins).unwrap();
        for (name, text) in &self.files {
            std::fs::write(config.join(name), text).unwrap();
        }
        for (name, path) in &self.plugins {
            std::fs::copy(path, plugins.join(format!("{name}.wasm"))).unwrap();
        }
        if let Some(text) = &self.dotenv {
            std::fs::write(dir.path().join(".env"), text).unwrap();
        }
        for (name, bytes) in &self.plugin_files {
            std::fs::write(plugins.join(format!("{name}.wasm")), bytes).unwrap();
        }
        let launch = Launch {
            env: self.env,
            args: self.args,
            log: self.capture_logs.then(|| dir.path().join("gateway.log")),
        };
        let (child, url) = spawn(dir.path(), &launch);
        Gateway {
            child,
            url,
            dir,
            launch,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }
}

/// `tollgate VERB` on the folder's providers/, plugins/ and data/, run from
/// that folder with an empty environment.
pub fn tollgate(verb: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .arg(verb)
        .arg("--config")
        .arg(dir.join("providers"))
        .arg("--plugins")
        .arg(dir.join("plugins"))
        .arg("--data")
        .arg(dir.join("data"))
        .current_dir(dir)
        .env_clear();
    command
}

/// Runs a command to completion: whether it succeeded, and all it printed.
pub fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// How a test's gateway is started, again on a restart.
struct Launch {
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// Where its stderr goes, when the test reads it.
    log: Option<PathBuf>,
}

/// Starts `tollgate serve` on the folder's providers/, plugins/ and data/,
/// and waits for it to say where it listens.
fn spawn(dir: &std::path::Path, launch: &Launch) -> (Child, String) {
    let stderr = match &launch.log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::inherit(),
    };
    let mut child = tollgate("serve", dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(&launch.args)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOLLGATE_LOG", "warn")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("starting tollgate");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("tollgate listening on ")
        .unwrap_or_else(|| panic!("tollgate did not start: {line:?}"))
        .to_owned();
    (child, url)
}

pub struct Gateway {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
    launch: Launch,
    pub client: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error message of an OpenAI-shaped error body.
    pub fn error_message(&self) -> String {
        let body = self.json();
        assert!(
            body["error"]["type"].is_string(),
            "not an OpenAI error: {body}"
        );
        assert!(
            body["error"]["code"].is_string(),
            "not an OpenAI error: {body}"
        );
        body["error"]["message"].as_str().unwrap().to_owned()
    }

    /// The `data:` payloads of an SSE body.
    pub fn events(&self) -> Vec<String> {
        self.text
            .split("\n\n")
            .filter_map(|frame| frame.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

impl Gateway {
    /// Stops the gateway (gracefully with SIGTERM, or with SIGKILL as a
    /// crash would) and starts a new one on the same folders.
    pub fn restart(&mut self, graceful: bool) {
        if graceful {
            self.stop();
        } else {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
        }
        let (child, url) = spawn(self.dir.path(), &self.launch);
        self.child = child;
        self.url = url;
    }

    /// Starts the gateway again on the same folders, after [`Gateway::stop`].
    pub fn start_again(&mut self) {
        let (child, url) = spawn(self.dir.path(), &self.launch);
        self.child = child;
        self.url = url;
    }

    /// Stops the gateway with SIGTERM and waits for it to exit cleanly.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "tollgate exited with {exit} on SIGTERM");
    }

    /// CPU time the gateway has used so far, all its threads together
    /// (Linux's per-thread `schedstat`, in nanoseconds).
    pub fn cpu_time(&self) -> Duration {
        let tasks = format!("/proc/{}/task", self.child.id());
        let nanos: u64 = std::fs::read_dir(tasks)
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    /// The gateway process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the gateway has logged so far ([`Setup::capture_logs`]).
    pub fn logs(&self) -> String {
        let path = self.launch.log.as_ref().expect("started with capture_logs");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The folder holding this gateway's providers/, plugins/ and data/.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request to tollgate");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    pub async fn chat(&self, body: Value) -> Reply {
        self.send(self.post("/v1/chat/completions").json(&body))
            .await
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }
}

/// Two providers on their own mocks, `first-chat` falling back to `second-chat`.
pub async fn pair() -> (
    crate::support::mock::Mock,
    crate::support::mock::Mock,
    Gateway,
) {
    use crate::support::mock::Mock;
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let gateway = Setup::new()
        .provider("first", &first.base_url(), &[("first-chat", "f1")])
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n")
        .start();
    (first, second, gateway)
}

/// A minimal chat request.
pub fn hello(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The text of a completion.
pub fn content(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

/// The text a stream's chunks add up to.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
