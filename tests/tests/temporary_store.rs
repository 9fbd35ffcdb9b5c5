//! `alliance demo` and `alliance bench` without `--target` run their service
//! on a temporary store. A stop signal during the replay or the load ends
//! them within seconds, and they remove that store before they exit.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Maximum time from the signal to the exit.
const EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Starts `alliance` with `arguments` and its temporary files in `tmp`.
fn start(arguments: &[&str], tmp: &Path) -> Child {
    let mut command = Command::new(common::binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("ALLIANCE_") {
            command.env_remove(key);
        }
    }
    command
        .args(arguments)
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alliance starts")
}

/// Reads a child's output on a thread of its own, so that the child never
/// blocks on a full pipe. The returned buffer contains the text read so far.
fn collect(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let shared = Arc::clone(&text);
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stream.read(&mut buffer) {
            if read == 0 {
                break;
            }
            shared
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    });
    text
}

fn wait_for_text(output: &Mutex<String>, text: &str, limit: Duration) {
    let started = Instant::now();
    while !output.lock().unwrap().contains(text) {
        assert!(
            started.elapsed() < limit,
            "no {text:?} within {limit:?}; output so far: {}",
            output.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn entries(directory: &Path) -> Vec<String> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Sends `signal` (such as `INT`) to the child and waits for its exit;
/// returns the exit status and how long the exit took.
fn stop_with(child: &mut Child, signal: &str) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -{signal} {pid}");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, sent.elapsed());
        }
        if sent.elapsed() > EXIT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("alliance did not exit within {EXIT_LIMIT:?} of SIG{signal}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A standard stream of the child.
enum Stream {
    Stdout,
    Stderr,
}

/// A command to start, the output that shows its work began, and the
/// signal that stops it.
struct StopCase {
    arguments: &'static [&'static str],
    /// The stream and the text on it once the work began.
    started_text: (Stream, &'static str),
    store_prefix: &'static str,
    signal: &'static str,
    exit_code: i32,
}

/// Starts the command, stops it with the signal once its work began, and
/// checks the exit code, the time, the stop message and the emptied TMPDIR.
fn assert_stop_removes_store(case: &StopCase) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start(case.arguments, tmp.path());
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());

    let (stream, text) = &case.started_text;
    let started_output = match stream {
        Stream::Stdout => &stdout,
        Stream::Stderr => &stderr,
    };
    wait_for_text(started_output, text, Duration::from_secs(30));
    let stores = entries(tmp.path());
    assert!(
        stores.iter().any(|name| name.starts_with(case.store_prefix)),
        "the command keeps its store in TMPDIR: {stores:?}"
    );
    // Lets requests reach the service, so the store is in use when the signal comes.
    thread::sleep(Duration::from_millis(500));

    let (status, took) = stop_with(&mut child, case.signal);
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(
        status.code(),
        Some(case.exit_code),
        "exit code 128 + SIG{}; stderr: {stderr}",
        case.signal
    );
    assert!(took < EXIT_LIMIT, "{took:?}");
    let message = format!("Stopped by SIG{}; removed the temporary store", case.signal);
    assert!(stderr.contains(&message), "{stderr}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "TMPDIR holds nothing left");
}

#[test]
fn demo_removes_its_store_on_sigint() {
    assert_stop_removes_store(&StopCase {
        arguments: &["demo", "--exit"],
        started_text: (Stream::Stderr, "Step 1 of 3"),
        store_prefix: "alliance-demo-",
        signal: "INT",
        exit_code: 130,
    });
}

#[test]
fn bench_removes_its_store_on_sigterm() {
    assert_stop_removes_store(&StopCase {
        arguments: &["bench", "--requests", "200000", "--rounds", "1", "--max-seconds", "60"],
        started_text: (Stream::Stdout, "alliance bench:"),
        store_prefix: "alliance-bench-",
        signal: "TERM",
        exit_code: 143,
    });
}
