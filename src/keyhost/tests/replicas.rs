//! Keyhost replicas: three `ghostpii-keyhost` processes on one PostgreSQL database and one
//! set of key files, with concurrent clients on all of them. Rid allocation, the DP budget,
//! the linear audit, distinct-constant limits and idempotency keys stay exact; a replica
//! killed (SIGKILL) mid-load loses no audited answer: the others keep answering, every
//! issued answer is audited exactly once, and the audit chain verifies.

#[allow(dead_code)]
#[path = "api/client.rs"]
mod client;
#[path = "api/pg_cluster.rs"]
mod pg_cluster;
#[path = "api/process.rs"]
mod process;

mod backend {
    pub fn new_database() -> Option<String> {
        Some(crate::pg_cluster::shared().new_database())
    }
}

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ghostpii_core::RidSet;
use ghostpii_keyhost::db::OptionalExtension;
use serde_json::{json, Value};

use client::{try_raw, Resp};
use process::KeyhostProcess;

/// One keyhost process on the shared database.
type Replica = KeyhostProcess;

fn start_replica(dir: &Path, database: &str) -> Replica {
    KeyhostProcess::start(dir, &["--database", database], &[])
}

fn call(url: &str, token: &str, method: &str, path: &str, body: &Value, key: Option<&str>) -> std::io::Result<Resp> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    try_raw(url, method, path, Some(token), Some(&body.to_string()), &headers)
}

fn ok(url: &str, token: &str, method: &str, path: &str, body: Value) -> Value {
    call(url, token, method, path, &body, None).unwrap().ok()
}

struct Cluster {
    dir: tempfile::TempDir,
    database: String,
    replicas: Vec<Replica>,
    owner: String,
    analyst: String,
    dataset_id: i64,
    /// (column id, epoch) of `income` (DP sums), `age` (exact sums), `dob` (comparisons).
    income: (i64, u32),
    age: (i64, u32),
    dob: (i64, u32),
    start: u64,
}

fn register(url: &str, owner: &str, body: Value) -> (i64, u32) {
    let r = ok(url, owner, "POST", "/v1/datasets/patrons/columns", body);
    (r["column_id"].as_i64().unwrap(), r["epoch"].as_u64().unwrap() as u32)
}

impl Cluster {
    /// Three replicas started at once (they bootstrap one at a time), an owner, an analyst,
    /// a dataset with three columns and 1000 rows.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let database = backend::new_database().unwrap();
        let kh_dir = dir.path().join("kh");
        let replicas: Vec<Replica> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3).map(|_| s.spawn(|| start_replica(&kh_dir, &database))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let admin = std::fs::read_to_string(kh_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let ids: HashSet<String> = replicas
            .iter()
            .map(|r| ok(&r.url, &admin, "GET", "/v1/whoami", json!({}))["keyhost_id"].to_string())
            .collect();
        assert_eq!(ids.len(), 1, "one keyhost, three replicas: {ids:?}");
        let u = |i: usize| replicas[i].url.clone();
        let token = |i: usize, name: &str, role: &str| {
            ok(
                &u(i),
                &admin,
                "POST",
                "/v1/identities",
                json!({"name": name, "role": role}),
            );
            ok(&u(i), &admin, "POST", "/v1/tokens", json!({"identity": name}))["token"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let owner = token(0, "olivia", "owner");
        let analyst = token(1, "analyst", "member");
        let dataset_id = ok(&u(2), &owner, "POST", "/v1/datasets", json!({"name": "patrons"}))["id"]
            .as_i64()
            .unwrap();
        let income = register(
            &u(0),
            &owner,
            json!({"name": "income", "dtype": "float64", "scale": 2, "bounds": [0, 100_000_000],
                   "facets": ["num", "val"]}),
        );
        let age = register(
            &u(1),
            &owner,
            json!({"name": "age", "dtype": "int64", "scale": 0, "bounds": [0, 150], "facets": ["num"]}),
        );
        let dob = register(
            &u(2),
            &owner,
            json!({"name": "dob", "dtype": "date", "scale": 0, "bounds": null, "facets": ["ord"],
                   "ord": {"offset": -40_000, "bits": 17}}),
        );
        let alloc = ok(
            &u(0),
            &owner,
            "POST",
            "/v1/datasets/patrons/rids",
            json!({"count": 1000, "columns": [income.0, age.0, dob.0]}),
        );
        Cluster {
            dir,
            database,
            replicas,
            owner,
            analyst,
            dataset_id,
            income,
            age,
            dob,
            start: alloc["start"].as_u64().unwrap(),
        }
    }

    fn url(&self, i: usize) -> &str {
        &self.replicas[i % self.replicas.len()].url
    }

    fn rids(&self, from: u64, n: u64) -> RidSet {
        RidSet::from_sorted(&(self.start + from..self.start + from + n).collect::<Vec<_>>())
    }

    fn sum(&self, col: (i64, u32), rids: &RidSet) -> Value {
        json!({"op": "sum", "dataset_id": self.dataset_id, "rids": rids.to_base64(),
               "terms": [{"column_id": col.0, "epoch": col.1, "weight": 1}]})
    }

    fn grant(&self, column: &str, operation: &str, params: Value) {
        ok(
            self.url(0),
            &self.owner,
            "POST",
            "/v1/grants",
            json!({"identity": "analyst", "dataset": "patrons", "column": column, "operation": operation,
                   "params": params}),
        );
    }

    /// One answer-key request of the analyst on replica `i`: its single result.
    fn answer(&self, i: usize, request: Value) -> Value {
        let r = ok(
            self.url(i),
            &self.analyst,
            "POST",
            "/v1/answer-keys",
            json!({"requests": [request]}),
        );
        r["results"][0].clone()
    }

    /// Offline verification of the chain, after a live replica integrated the queue (a read of
    /// the log does).
    fn verify(&self) -> ghostpii_keyhost::AuditVerification {
        ok(self.url(0), &self.owner, "GET", "/v1/audit/checkpoint", json!({}));
        ghostpii_keyhost::verify_audit(&self.dir.path().join("kh"), Some(&self.database)).unwrap()
    }

    /// A direct connection to the database.
    fn db(&self) -> ghostpii_keyhost::db::Connection {
        ghostpii_keyhost::db::open(&ghostpii_keyhost::db::Database::postgres(self.database.clone())).unwrap()
    }
}

/// Run `f(replica, i)` for `per` requests on each replica at once; the results in order.
fn on_all<T: Send>(c: &Cluster, per: usize, f: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let n = c.replicas.len();
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for r in 0..n {
            let (f, out) = (&f, &out);
            s.spawn(move || {
                for i in 0..per {
                    let v = f(r, i);
                    out.lock().unwrap().push(v);
                }
            });
        }
    });
    out.into_inner().unwrap()
}

#[test]
fn concurrent_writers_on_three_replicas_stay_exact() {
    let c = Cluster::start();
    let entries_before = c.verify().entries;

    // Rid allocation: no rid is handed out twice.
    let mut ranges: Vec<(u64, u64)> = on_all(&c, 8, |r, _| {
        let a = ok(
            c.url(r),
            &c.owner,
            "POST",
            "/v1/datasets/patrons/rids",
            json!({"count": 7, "columns": []}),
        );
        (a["start"].as_u64().unwrap(), a["count"].as_u64().unwrap())
    });
    ranges.sort_unstable();
    assert_eq!(ranges.len(), 24);
    assert_eq!(ranges[0].0, c.start + 1000);
    for w in ranges.windows(2) {
        assert_eq!(
            w[0].0 + w[0].1,
            w[1].0,
            "allocations overlap or leave a gap: {ranges:?}"
        );
    }

    // DP budget: 0.1 per distinct request, 1.0 in all: never over-spent.
    c.grant("income", "aggregate", json!({"epsilon": 0.1, "budget": 1.0}));
    let dp = on_all(&c, 8, |r, i| {
        c.answer(r, c.sum(c.income, &c.rids(0, 20 + (r * 8 + i) as u64)))
    });
    let issued = dp.iter().filter(|v| v["ok"] == true).count();
    let exhausted = dp.iter().filter(|v| v["reason"] == "budget_exhausted").count();
    assert_eq!(issued + exhausted, 24, "{dp:?}");
    assert!(
        (9..=10).contains(&issued),
        "{issued} DP answers of 0.1 issued against a total of 1.0"
    );
    let b = ok(c.url(2), &c.analyst, "GET", "/v1/budget?dataset=patrons", json!({}));
    let spent = b["epsilon_spent"].as_f64().unwrap();
    assert!(spent <= 1.0 + 1e-9 && (spent - 0.1 * issued as f64).abs() < 1e-9, "{b}");

    // Linear audit: of a 10-row sum and the same rows but one, only one may be answered,
    // whichever replica gets which.
    c.grant("age", "aggregate", json!({"min_rows": 5}));
    let pairs = 12u64;
    let exact = on_all(&c, 8, |r, i| {
        let pair = (i as u64 * 3 + r as u64) / 2;
        let first = (i as u64 * 3 + r as u64).is_multiple_of(2);
        let base = 500 + 10 * pair;
        let set = if first { c.rids(base, 10) } else { c.rids(base + 1, 9) };
        (pair, c.answer(r, c.sum(c.age, &set)))
    });
    for p in 0..pairs {
        let of: Vec<&Value> = exact.iter().filter(|(q, _)| *q == p).map(|(_, v)| v).collect();
        assert_eq!(of.len(), 2);
        let answered = of.iter().filter(|v| v["ok"] == true).count();
        assert_eq!(answered, 1, "pair {p}: {of:?}");
        assert!(of.iter().any(|v| v["reason"] == "audit_disclosure"), "pair {p}: {of:?}");
    }

    // Distinct constants: at most 4, across all replicas.
    c.grant("dob", "compare", json!({"max_constants": 4}));
    let cmp = on_all(&c, 4, |r, i| {
        c.answer(
            r,
            json!({"op": "compare", "dataset_id": c.dataset_id, "column_id": c.dob.0, "epoch": c.dob.1,
                   "constant": (r * 4 + i) as i64 * 100}),
        )
    });
    assert_eq!(cmp.iter().filter(|v| v["ok"] == true).count(), 4, "{cmp:?}");
    assert_eq!(
        cmp.iter().filter(|v| v["reason"] == "max_constants").count(),
        8,
        "{cmp:?}"
    );

    // One idempotency key sent to every replica at once: answered and audited once.
    let body = json!({"requests": [c.sum(c.age, &c.rids(0, 100))]});
    let same = on_all(&c, 1, |r, _| {
        call(
            c.url(r),
            &c.analyst,
            "POST",
            "/v1/answer-keys",
            &body,
            Some("replicated-request-0001"),
        )
        .unwrap()
        .ok()
    });
    assert!(same.iter().all(|v| v == &same[0]), "{same:?}");

    // One chain, dense and valid: one entry per answer above (and per management action).
    let v = c.verify();
    assert!(v.ok, "{:?}", v.problems);
    let answers = (dp.len() + exact.len() + cmp.len() + 1) as u64;
    let management = 24 + 3; // allocations and grants
    assert_eq!(v.entries, entries_before + answers + management);
}

#[test]
fn a_killed_replica_loses_no_audited_answer() {
    let mut c = Cluster::start();
    assert_eq!(c.replicas.len(), 3);
    c.grant("income", "aggregate", json!({}));
    let per = 30;
    let done = AtomicUsize::new(0);
    let killed = AtomicUsize::new(0);
    let receipts: Mutex<Vec<(usize, Value)>> = Mutex::new(Vec::new());
    let victim = 2usize;
    let urls: Vec<String> = c.replicas.iter().map(|r| r.url.clone()).collect();
    let mut doomed = c.replicas.pop().unwrap();
    // The same exact sum each time (a repeat teaches the linear audit nothing), as separate
    // requests: each is issued and audited on its own.
    let request = |_: u64| json!({"requests": [c.sum(c.income, &c.rids(0, 100))]});
    std::thread::scope(|s| {
        for r in 0..3 {
            let (urls, done, killed, receipts, request, analyst) =
                (&urls, &done, &killed, &receipts, &request, &c.analyst);
            s.spawn(move || {
                for i in 0..per {
                    let key = format!("load-{r}-{i:04}-abcdefghijkl");
                    let body = request((r * per + i) as u64);
                    // A client retries on the next replica, with the same Idempotency-Key.
                    let mut target = r;
                    let res = loop {
                        match call(&urls[target], analyst, "POST", "/v1/answer-keys", &body, Some(&key)) {
                            Ok(resp) if resp.status == 200 => break resp.body,
                            Ok(resp) if resp.status >= 500 => target = (target + 1) % 3,
                            Ok(resp) => panic!("unexpected response {}: {}", resp.status, resp.body),
                            Err(_) => target = (target + 1) % 3,
                        }
                    };
                    let result = &res["results"][0];
                    assert_eq!(result["ok"], true, "{result}");
                    receipts.lock().unwrap().push((i, result["receipt"].clone()));
                    if killed.load(Ordering::SeqCst) == 1 && target != victim {
                        killed.store(2, Ordering::SeqCst); // a survivor answered after the kill
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Kill one replica once a third of the load is answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while done.load(Ordering::SeqCst) < 3 * per / 3 {
            assert!(std::time::Instant::now() < deadline, "the load did not progress");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        doomed.kill();
        killed.store(1, Ordering::SeqCst);
    });
    assert_eq!(
        killed.load(Ordering::SeqCst),
        2,
        "no surviving replica answered after the kill"
    );
    assert!(
        try_raw(&urls[victim], "GET", "/v1/info", None, None, &[]).is_err(),
        "the victim is gone"
    );
    let receipts = receipts.into_inner().unwrap();
    assert_eq!(receipts.len(), 3 * per, "every request was answered");
    // Every receipt's promise holds (the survivors' sequencer integrated what the victim queued,
    // whether or not the victim led): each names its own entry of the log.
    let received: BTreeSet<i64> = receipts
        .iter()
        .map(|(_, receipt)| {
            let check = ok(c.url(0), &c.analyst, "POST", "/v1/audit/receipt", receipt.clone());
            assert_eq!(check["status"], "included", "{check}");
            check["audit_index"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(received.len(), receipts.len(), "two answers share an audit entry");
    // Exactly the received answers are audited as issued sums of the analyst: none is lost,
    // none is recorded twice (a retried request got the recorded answer, not a new one).
    let conn = c.db();
    let audited: BTreeSet<i64> = conn
        .query_map(
            "SELECT idx FROM audit WHERE identity = 'analyst' AND operation = 'sum' AND decision = 'issued'",
            (),
            |r| r.get(0),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(audited, received);
    let queued: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_queue", (), |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 0, "entries left in the queue");
    let v = c.verify();
    assert!(v.ok, "{:?}", v.problems);
    // The survivors keep answering.
    for r in 0..2 {
        let one = c.answer(r, c.sum(c.income, &c.rids(0, 60)));
        assert_eq!(one["ok"], true, "{one}");
    }
}

#[test]
fn a_lost_database_connection_is_reestablished() {
    let c = Cluster::start();
    c.grant("income", "aggregate", json!({}));
    let request = c.sum(c.income, &c.rids(0, 100));
    assert_eq!(c.answer(0, request.clone())["ok"], true);
    // The database drops every keyhost connection (a restart, a failover, an admin).
    let conn = ghostpii_keyhost::db::open(&ghostpii_keyhost::db::Database::postgres(c.database.clone())).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(n >= 3, "{n} connections terminated");
    // At most the first request on each replica fails (nothing of it committed); then they
    // answer again on a new connection.
    for r in 0..3 {
        let body = json!({"requests": [request.clone()]});
        let first = call(c.url(r), &c.analyst, "POST", "/v1/answer-keys", &body, None).unwrap();
        assert!(first.status == 200 || first.status == 500, "{}", first.body);
        assert_eq!(c.answer(r, request.clone())["ok"], true);
    }
    let v = c.verify();
    assert!(v.ok, "{:?}", v.problems);
}

/// Two datasets written at once do not wait for each other: while a transaction of the test
/// holds the analyst's lock on `patrons` (as a long answer on it would), an answer on `patrons`
/// waits for it, and meanwhile an answer on a second dataset, a rid allocation of each dataset
/// and an answer of another identity on `patrons` complete — on the same replica. Shown by
/// overlap: the waiting request is still waiting (its lock not granted) after the others
/// completed.
#[test]
fn writers_of_two_datasets_do_not_wait_for_each_other() {
    use ghostpii_keyhost::db::{lock_key, LockScope};
    let c = Cluster::start();
    c.grant("income", "aggregate", json!({}));
    // A second dataset of the same owner, with one column, rows and the same grant.
    let visits = ok(c.url(0), &c.owner, "POST", "/v1/datasets", json!({"name": "visits"}))["id"]
        .as_i64()
        .unwrap();
    let r = ok(
        c.url(0),
        &c.owner,
        "POST",
        "/v1/datasets/visits/columns",
        json!({"name": "cost", "dtype": "int64", "scale": 0, "bounds": [0, 1000], "facets": ["num"]}),
    );
    let cost = (r["column_id"].as_i64().unwrap(), r["epoch"].as_u64().unwrap() as u32);
    let alloc = ok(
        c.url(0),
        &c.owner,
        "POST",
        "/v1/datasets/visits/rids",
        json!({"count": 100, "columns": [cost.0]}),
    );
    let vstart = alloc["start"].as_u64().unwrap();
    ok(
        c.url(0),
        &c.owner,
        "POST",
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "visits", "column": "cost", "operation": "aggregate",
               "params": {}}),
    );
    let on_visits = json!({"op": "sum", "dataset_id": visits,
        "rids": RidSet::from_sorted(&(vstart..vstart + 50).collect::<Vec<_>>()).to_base64(),
        "terms": [{"column_id": cost.0, "epoch": cost.1, "weight": 1}]});
    let on_patrons = c.sum(c.income, &c.rids(0, 50));
    // Both answer without contention.
    assert_eq!(c.answer(0, on_patrons.clone())["ok"], true);
    assert_eq!(c.answer(0, on_visits.clone())["ok"], true);

    let mut holder = c.db();
    let analyst_id: i64 = holder
        .query_row("SELECT id FROM identities WHERE name = 'analyst'", (), |r| r.get(0))
        .unwrap();
    let watcher = c.db();
    let waiting = || -> i64 {
        watcher
            .query_row(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                (),
                |r| r.get(0),
            )
            .unwrap()
    };
    let tx = holder
        .transaction_scoped(&[lock_key(LockScope::IdentityDataset, analyst_id, c.dataset_id)])
        .unwrap();
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let blocked = s.spawn(|| {
            let v = c.answer(0, on_patrons.clone());
            finished.store(1, Ordering::SeqCst);
            v
        });
        // wait until the patrons answer is queued behind the held lock
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while waiting() == 0 {
            assert!(std::time::Instant::now() < deadline, "the patrons answer never waited");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // meanwhile, on the same replica: the other dataset, rid allocations, the owner
        let other = c.answer(0, on_visits.clone());
        assert_eq!(other["ok"], true, "{other}");
        for ds in ["visits", "patrons"] {
            let a = ok(
                c.url(0),
                &c.owner,
                "POST",
                &format!("/v1/datasets/{ds}/rids"),
                json!({"count": 5, "columns": []}),
            );
            assert_eq!(a["count"], 5);
        }
        let owner = ok(
            c.url(0),
            &c.owner,
            "POST",
            "/v1/answer-keys",
            json!({"requests": [on_patrons.clone()]}),
        );
        assert_eq!(owner["results"][0]["ok"], true, "{owner}");
        // the overlap: all of that completed while the patrons answer was still waiting
        assert_eq!(
            finished.load(Ordering::SeqCst),
            0,
            "the held lock did not hold the patrons answer"
        );
        assert_eq!(
            waiting(),
            1,
            "the patrons answer stopped waiting before the lock was released"
        );
        tx.rollback().unwrap();
        let v = blocked.join().unwrap();
        assert_eq!(v["ok"], true, "{v}");
    });
    let v = c.verify();
    assert!(v.ok, "{:?}", v.problems);
}

/// The local TCP ports of a process's sockets (Linux: its `/proc/PID/fd` socket inodes looked
/// up in `/proc/net/tcp`).
fn local_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned)
        })
        .collect();
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                out.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    out
}

/// The sequencer leader fails over: the replica that holds the leader lock is killed, another
/// takes the lock and integrates the queue on its own — no read of the log triggers it —
/// including the entries the killed leader's clients queued.
#[test]
fn the_sequencer_leader_fails_over() {
    let mut c = Cluster::start();
    c.grant("income", "aggregate", json!({}));
    let conn = c.db();
    let queued = || -> i64 {
        conn.query_row("SELECT COUNT(*) FROM audit_queue", (), |r| r.get(0))
            .unwrap()
    };
    // the client port of the backend holding the leader lock, if one does
    let leader_port = || -> Option<i64> {
        let key = ghostpii_keyhost::db::postgres::SEQUENCER_LEADER;
        conn.query_row(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
             AND l.classid::bigint = ?1 AND l.objid::bigint = ?2 AND l.objsubid = 1",
            ghostpii_keyhost::params![key >> 32, key & 0xffff_ffff],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
    };
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    // the leader lock may still show, for a moment, on the backend of a process that has
    // exited (the cluster's bootstrap): wait until a live replica holds it
    let found: std::cell::Cell<Option<(i64, usize)>> = std::cell::Cell::new(None);
    until("no replica leads the sequencer", &|| {
        let at = leader_port().and_then(|port| {
            c.replicas
                .iter()
                .position(|r| local_ports(r.child.id()).contains(&(port as u16)))
                .map(|i| (port, i))
        });
        found.set(at);
        at.is_some()
    });
    let (port, leader) = found.get().expect("a replica leads the sequencer");
    let mut receipts = Vec::new();
    for r in 0..3 {
        let v = c.answer(r, c.sum(c.income, &c.rids(0, 100))); // repeats teach the linear audit nothing
        assert_eq!(v["ok"], true, "{v}");
        receipts.push(v["receipt"].clone());
    }
    let mut killed = c.replicas.remove(leader);
    killed.kill();
    for i in 0..6 {
        let v = c.answer(i, c.sum(c.income, &c.rids(0, 100)));
        assert_eq!(v["ok"], true, "{v}");
        receipts.push(v["receipt"].clone());
    }
    until("no survivor took the leader lock", &|| {
        leader_port().is_some_and(|p| p != port)
    });
    until("the new leader did not integrate the queue", &|| queued() == 0);
    // every promise kept, each entry once
    let mut indices: Vec<i64> = receipts
        .iter()
        .map(|r| {
            let check = ok(c.url(0), &c.analyst, "POST", "/v1/audit/receipt", r.clone());
            assert_eq!(check["status"], "included", "{check}");
            check["audit_index"].as_i64().unwrap()
        })
        .collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), receipts.len());
    let v = c.verify();
    assert!(v.ok, "{:?}", v.problems);
}
