//! What reaches ferry from outside is bounded and confined: development conveniences
//! stay on loopback, browsers from other sites are kept out, notices cannot pile up
//! or multiply, outbound calls follow no redirect, slow bodies and silent sockets are
//! cut off, tokens are checked for whom they were minted, and connect parameters and
//! client input are held to a strict shape.

mod dev;
mod hygiene;
mod notices;
mod outbound;
mod timeouts;
mod tokens;

use std::process::{Child, Command, Stdio};

use crate::support::*;

/// A ferry started with the given environment and no config file: no key unless the
/// environment configures one.
pub(super) struct Bare {
    pub(super) child: Child,
    /// Where to reach it: the listening port on 127.0.0.1.
    pub(super) addr: String,
    /// Every stdout line up to the end of start-up.
    pub(super) stdout: Vec<String>,
    pub(super) log: std::path::PathBuf,
    pub(super) _dir: tempfile::TempDir,
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bare {
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The command for a bare ferry with `env`, its data in `dir`.
fn bare_command(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args)
        .env_remove("FERRY_CONFIG")
        .env("FERRY_DATA_DIR", dir)
        .env("FERRY_SERVER__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// Starts `ferry serve` with `env` (over a loopback listener on a free port).
pub(super) fn start_bare(env: &[(&str, &str)]) -> Bare {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ferry.log");
    let mut child = bare_command(dir.path(), &["serve"], env)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let mut addr = None;
    let mut stdout = Vec::new();
    while let Ok(line) = rx.recv_timeout(60 * SEC) {
        if let Some(rest) = line.strip_prefix("ferry listening on http://") {
            let bound = rest.split_whitespace().next().unwrap_or("");
            let port = bound.rsplit(':').next().unwrap_or("");
            addr = Some(format!("127.0.0.1:{port}"));
        }
        let done = line.starts_with("embedded backend");
        stdout.push(line);
        if done {
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| {
        panic!(
            "ferry did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    Bare {
        child,
        addr,
        stdout,
        log,
        _dir: dir,
    }
}

/// Runs `ferry serve` with `env` expecting it to refuse to start: its stderr.
pub(super) fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bare_command(dir.path(), &["serve"], env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + 30 * SEC;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "ferry started with {env:?}");
            let mut err = String::new();
            use std::io::Read as _;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry kept running with {env:?}: it should refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends `request` (raw HTTP/1.1) to `addr` and reads the answer until the server
/// closes or 10 s pass: the status line and the rest.
pub(super) async fn raw_http(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(10 * SEC, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
