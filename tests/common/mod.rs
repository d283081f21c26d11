//! Helpers shared by the integration tests that need real serial lines.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// A socat pseudo-terminal pair, `dut` for the harness and `peer` for the meter;
/// socat is killed when this is dropped.
pub struct PtyPair {
    child: Child,
    _dir: tempfile::TempDir,
    pub dut: PathBuf,
    pub peer: PathBuf,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let dut = dir.path().join("dut");
        let peer = dir.path().join("peer");
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", dut.display()))
            .arg(format!("pty,raw,echo=0,link={}", peer.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "socat is needed for the pty tests (apt-get install socat; .ci/run installs it)",
            );
        let pair = PtyPair {
            child,
            _dir: dir,
            dut,
            peer,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(pair.dut.exists() && pair.peer.exists()) {
            assert!(Instant::now() < deadline, "socat made no pty links");
            std::thread::sleep(Duration::from_millis(10));
        }
        pair
    }

    /// The meter's end, opened at `baud`.
    pub fn open_peer(&self, baud: u32) -> SerialStream {
        tokio_serial::new(path_str(&self.peer), baud)
            .open_native_async()
            .unwrap()
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// `idis-harness simulate` in a child process; killed when dropped.
pub struct Simulator(Child);

impl Simulator {
    pub fn start(args: &[&str]) -> (Simulator, u16) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_idis-harness"))
            .args(["simulate", "--listen", &listen])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the simulator starts");
        let sim = Simulator(child);
        let addr: std::net::SocketAddr = listen.parse().expect("an address");
        let t0 = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the simulator did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (sim, port)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
