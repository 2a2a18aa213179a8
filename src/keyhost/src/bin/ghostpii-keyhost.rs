//! `ghostpii-keyhost serve --data DIR [--database postgresql://..] --listen ADDR`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: ghostpii-keyhost serve --data DIR [--database URL] [--listen ADDR] [--default-dp-budget EPS]
                             [--default-dp-delta DELTA] [--new-noise-key]   (default ADDR 127.0.0.1:8737)
       ghostpii-keyhost verify-audit --data DIR [--database URL]
  --database postgresql://user@host:port/db  keep all state in PostgreSQL (DIR then holds only the
                             key files); several keyhosts with the same key files may share it
                             (default: DIR/keyhost.db, SQLite). Also read from GHOSTPII_DATABASE.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut data: Option<PathBuf> = None;
    let mut database: Option<String> = std::env::var("GHOSTPII_DATABASE").ok().filter(|s| !s.is_empty());
    let mut listen = "127.0.0.1:8737".to_owned();
    let mut privacy = ghostpii_keyhost::config::Privacy::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match key {
            "--data" => data = value().map(PathBuf::from),
            "--database" => match value() {
                Some(v) => database = Some(v),
                None => {
                    eprintln!("--database needs a connection string\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--listen" => match value() {
                Some(v) => listen = v,
                None => {
                    eprintln!("--listen needs a value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--default-dp-budget" | "--default-dp-delta" => {
                let Some(v) = value().and_then(|v| v.parse::<f64>().ok()) else {
                    eprintln!("{key} needs a number\n{USAGE}");
                    return ExitCode::from(2);
                };
                if key == "--default-dp-budget" {
                    privacy.default_budget.epsilon = v;
                } else {
                    privacy.default_budget.delta = v;
                }
            }
            "--new-noise-key" => privacy.new_noise_key = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(data) = data else {
        eprintln!("--data DIR is required\n{USAGE}");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "serve" => {
            let mut config = ghostpii_keyhost::Config::new(data, listen);
            config.privacy = privacy;
            config.database = database;
            let res = ghostpii_keyhost::serve_blocking(config, |url| {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "ghostpii keyhost listening on {url}");
                let _ = out.flush();
            });
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ghostpii-keyhost: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "verify-audit" => match ghostpii_keyhost::verify_audit(&data, database.as_deref()) {
            Ok(v) => {
                println!("entries: {}  head: {}", v.entries, v.head);
                for p in &v.problems {
                    println!("entry {}: {}", p.index, p.problem);
                }
                println!("{}", if v.ok { "audit log OK" } else { "audit log TAMPERED" });
                if v.ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("ghostpii-keyhost: {e}");
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("unknown command '{other}'\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
