//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, listening on
//! 127.0.0.1 at a free port, trust authentication, fsync off. Run as the `postgres` user
//! when the tests run as root (initdb refuses root). Stopped when dropped, and — for the
//! cluster shared by a test binary, which is never dropped — by a watchdog process once the
//! test process has exited, however it exits.
//!
//! Without `initdb`/`pg_ctl` (on PATH or in /usr/lib/postgresql/*/bin) this panics: the
//! PostgreSQL tests fail loudly rather than skip (CI installs Debian's `postgresql`).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

fn find_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh").args(["-c", "command -v initdb"]).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !p.is_empty() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): the keyhost's \
             PostgreSQL tests need it; install Debian's `postgresql` package (apt-get install postgresql)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Initialise and start a new cluster (a few seconds).
    pub fn start() -> Cluster {
        let bin = find_bin();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "ghostpii-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(st.success(), "chown postgres {}", dir.display());
        }
        let c = Cluster {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let out = c
            .cmd("initdb")
            .args(["-D"])
            .arg(c.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300",
            c.port,
            c.dir.display()
        );
        let st = c
            .cmd("pg_ctl")
            .arg("-D")
            .arg(c.data())
            .args(["-o", &opts, "-l"])
            .arg(c.dir.join("log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        if !st.success() {
            let log = std::fs::read_to_string(c.dir.join("log")).unwrap_or_default();
            panic!("pg_ctl start failed:\n{log}");
        }
        c.watchdog();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stop the cluster and remove its directory once this process has exited (a kill -9
    /// of the test binary included). The watchdog outlives this process by design.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self) {
        let runuser = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} stop -m immediate \
             >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.display()
        );
        // Its own process group: a signal to the test's group (e.g. `timeout`) spares it.
        std::os::unix::process::CommandExt::process_group(Command::new("sh").args(["-c", &script]), 0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    /// Connection string of database `db` (as the `postgres` superuser, trust auth).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its connection string.
    pub fn new_database(&self) -> String {
        let name = format!("kh_{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(&name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster of this test binary, started on first use.
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}
