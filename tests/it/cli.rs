//! The command line as the README walks through it: `ferry client` in several
//! terminals at once, and `ferry config`.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Backend, Cluster, SECRET, SERVICE_TOKEN};

/// Lines of `r`, read on a thread, as they come.
fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `want`; panics with what was seen.
fn expect_line(rx: &mpsc::Receiver<String>, want: &str, within: Duration) {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => return,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {want:?} within {within:?}; saw {seen:#?}");
}

/// `ferry client listen bob` keeps running while `ferry client sync bob` and
/// `ferry client send alice` run in other terminals, and prints alice's message:
/// every invocation connects as its own device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_listen_while_sync_and_send_run_elsewhere() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let url = f.ws_url();
    let mut listen = c
        .ferry(&["client", "listen", "bob", "--url", &url], "pod-a")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(listen.stdout.take().unwrap());
    let err = lines(listen.stderr.take().unwrap());
    expect_line(&err, "connected as bob", Duration::from_secs(30));

    let run = |args: &[&str]| {
        let mut all = vec!["client"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &url]);
        let o = c.ferry(&all, "pod-a").output().unwrap();
        assert!(
            o.status.success(),
            "ferry {all:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["sync", "bob", "single:alice-bob"]);
    run(&[
        "send",
        "alice",
        "single:alice-bob",
        "hello from the walkthrough",
    ]);

    expect_line(&out, "hello from the walkthrough", Duration::from_secs(30));
    assert!(
        listen.try_wait().unwrap().is_none(),
        "the listener is still connected"
    );
    listen.kill().unwrap();
    let _ = listen.wait();
    f.stop();
}

/// `ferry config` shows that secrets are set, never their values.
#[test]
fn config_shows_secrets_as_set() {
    let c = Cluster::new(Backend::Embedded, "");
    let o = c
        .ferry(&["config"], "pod-a")
        .env("FERRY_SCYLLA__PASSWORD", "db-password-from-env")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8(o.stdout).unwrap();
    for secret in [SECRET, SERVICE_TOKEN, "db-password-from-env"] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    for key in ["hs256_secret", "service_token", "password"] {
        assert!(
            shown.contains(&format!("{key} = \"set\"")),
            "{key} not shown as set:\n{shown}"
        );
    }
}

/// Every invalid key is reported in one run, not one per attempt.
#[test]
fn config_errors_are_reported_all_at_once() {
    let c = Cluster::new(
        Backend::Embedded,
        "[pipeline]\npresence_ttl_secs = 0\n[custom]\ntimeout_ms = 0\n[log]\nappend_timeout_ms = 0\n",
    );
    let o = c.ferry(&["config"], "pod-a").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "invalid configuration exits 2");
    let err = String::from_utf8_lossy(&o.stderr);
    for key in [
        "pipeline.presence_ttl_secs",
        "custom.timeout_ms",
        "log.append_timeout_ms",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}
