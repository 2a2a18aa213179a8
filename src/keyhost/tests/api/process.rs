//! One `ghostpii-keyhost serve` process on 127.0.0.1:0, for the tests that run real processes
//! (`sequencer.rs`, `replicas.rs`): started with extra arguments and environment, its URL read
//! from the line it prints, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct KeyhostProcess {
    pub child: Child,
    pub url: String,
}

impl KeyhostProcess {
    /// `ghostpii-keyhost serve --listen 127.0.0.1:0 ARGS --data DIR`, with `env` set.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> KeyhostProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ghostpii-keyhost"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("ghostpii keyhost listening on ")
            .unwrap_or_else(|| panic!("the keyhost did not start: {line:?}"))
            .to_owned();
        KeyhostProcess { child, url }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for KeyhostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
