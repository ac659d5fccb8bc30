//! The processes a benchmark starts: its own roles (mock, bare proxy),
//! re-executed from this binary, and Tollgate builds, each dying with the
//! bench and telling its address on stdout.

use super::ROLE;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Process {
    /// The file descriptors the process has open.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub(crate) fn rss_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Has the kernel kill the child when the bench dies without dropping it
/// (a `kill -9`), so no mock, proxy, gateway or spinner outlives a run.
pub(crate) fn dies_with_bench(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only `prctl`, which is async-signal-safe; the death signal survives
    // the exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Starts a command that prints its address on its first line of stdout.
pub(crate) fn start(mut command: Command, prefix: &str) -> Process {
    let mut child = dies_with_bench(&mut command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("bad first line {line:?}"));
    let addr = addr.trim_start_matches("http://").parse().unwrap();
    Process { child, addr }
}

pub(crate) fn role(name: &str, upstream: Option<SocketAddr>) -> Process {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(ROLE, name);
    if let Some(upstream) = upstream {
        command.env("UPSTREAM", format!("http://{upstream}"));
    }
    start(command, "listening ")
}

/// The build `BENCH_TOLLGATE` names (an earlier commit's, say: runs of
/// both, taken in turn, make a before-and-after), else this one's.
pub(crate) fn tollgate_binary() -> std::ffi::OsString {
    std::env::var_os("BENCH_TOLLGATE")
        .map(|p| absolute(p).into_os_string())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tollgate").into())
}

/// `path` made absolute: each gateway runs in a folder of its own, where a
/// path relative to the bench's would not hold.
pub(crate) fn absolute(path: std::ffi::OsString) -> std::path::PathBuf {
    std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()))
}

/// Starts `binary` in `dir` in front of `upstream`, with the `.wasm` files of
/// `plugins` (when given) in its plugins folder.
pub(crate) fn tollgate(
    upstream: SocketAddr,
    dir: &std::path::Path,
    binary: &std::ffi::OsStr,
    plugins: Option<&std::path::Path>,
) -> Process {
    tollgate_with(upstream, dir, binary, plugins, "")
}

/// [`tollgate`] with `extra` top-level lines in the provider's fragment
/// (the soak's short timeouts).
pub(crate) fn tollgate_with(
    upstream: SocketAddr,
    dir: &std::path::Path,
    binary: &std::ffi::OsStr,
    plugins: Option<&std::path::Path>,
    extra: &str,
) -> Process {
    std::fs::create_dir_all(dir.join("providers")).unwrap();
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    for entry in plugins
        .map(|p| std::fs::read_dir(p).unwrap())
        .into_iter()
        .flatten()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::copy(&path, dir.join("plugins").join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.join("providers/bench.yaml"),
        format!(
            "name: bench\nflag: BENCH\nadapter: openai\nbase_url: http://{upstream}/v1\napi_key: ${{BENCH_KEY}}\ntier: free\nlimits: {{ rpm: 1000000000 }}\n{extra}models:\n  - {{ alias: bench-chat, model: m, mode: chat, limits: {{ rpd: 1000000000, tpm: 1000000000000 }} }}\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .args([
            "serve",
            "--config",
            "providers",
            "--plugins",
            "plugins",
            "--data",
            "data",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("BENCH", "1")
        .env("BENCH_KEY", "sk-bench")
        .env("TOLLGATE_LOG", "warn")
        .env("TOLLGATE_MAX_INSTANCES", "2048");
    start(command, "tollgate listening on ")
}
