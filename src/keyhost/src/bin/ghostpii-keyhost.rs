//! `ghostpii-keyhost serve --data DIR --listen ADDR`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ghostpii-keyhost serve --data DIR [--listen ADDR]   (default ADDR 127.0.0.1:8737)
       ghostpii-keyhost verify-audit --data DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut data: Option<PathBuf> = None;
    let mut listen = "127.0.0.1:8737".to_owned();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match key {
            "--data" => data = value().map(PathBuf::from),
            "--listen" => match value() {
                Some(v) => listen = v,
                None => {
                    eprintln!("--listen needs a value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
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
            let config = ghostpii_keyhost::Config::new(data, listen);
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
        "verify-audit" => match ghostpii_keyhost::verify_audit_db(&data) {
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
