//! The hello_world example, end to end: spawn the built binary, connect, read the exact bytes,
//! SIGINT it, check its output, exit status and the ~2 s delayed exit.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The example binary. `cargo test` builds examples next to the test binaries
/// (`target/<profile>/examples/`), but not when only this test is selected
/// (`--test hello_world`): if the binary is missing or older than the crate's sources, build it
/// with the test's own profile. (Asking cargo unconditionally would not do: a workspace-wide
/// `cargo test` builds the example with workspace-unified features, and a `-p reactor` build
/// would rebuild it with other ones on every run.)
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/hello_world-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join("hello_world");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = newest_mtime(&crate_dir.join("src"))
        .max(newest_mtime(&crate_dir.join("examples")))
        .max(newest_mtime(&crate_dir.join("Cargo.toml")));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_none_or(|b| b < sources) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "reactor",
            "--example",
            "hello_world",
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the hello_world example failed");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// The newest modification time of a file, or of any file under a directory.
fn newest_mtime(path: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(meta) = std::fs::metadata(path) else {
        return newest;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest = newest.max(newest_mtime(&entry.path()));
        }
    } else if let Ok(m) = meta.modified() {
        newest = m;
    }
    newest
}

/// Kills the child if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards the lines of a child's stream to a channel.
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn hello_world_end_to_end() {
    let mut child = Command::new(example_binary())
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hello_world");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let mut child = Guard(child);

    // Printed once the listener and the SIGINT handler are in place.
    let banner = stderr.recv_timeout(WAIT).expect("listening line");
    let addr = banner
        .strip_prefix("hello_world: listening on ")
        .expect(&banner)
        .to_string();

    for _ in 0..2 {
        let mut client = TcpStream::connect(&addr).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap(); // the server closes after flushing
        assert_eq!(answer, b"Hello, World!\n");
        assert_eq!(stdout.recv_timeout(WAIT).unwrap(), "flushed answer");
    }

    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let signalled = Instant::now();
    assert_eq!(
        stdout.recv_timeout(WAIT).unwrap(),
        "Caught an interrupt signal; exiting cleanly in two seconds."
    );
    assert!(TcpStream::connect(&addr).is_err(), "stopped accepting");

    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < WAIT, "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_millis(3500),
        "exited {took:?} after SIGINT"
    );
    assert_eq!(stdout.recv_timeout(WAIT).unwrap(), "done");
    assert!(stdout.recv_timeout(WAIT).is_err(), "nothing after done");
}
