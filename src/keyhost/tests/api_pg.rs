//! The keyhost API suite of `tests/api/` against PostgreSQL: every test keyhost gets a new
//! database in one throwaway cluster per test binary (`api/pg_cluster.rs`), started on first
//! use and stopped when the binary exits. Fails (does not skip) without PostgreSQL.

#[path = "api/answer_keys.rs"]
mod answer_keys;
#[path = "api/audit.rs"]
mod audit;
#[path = "api/bootstrap.rs"]
mod bootstrap;
#[path = "api/checkpoint.rs"]
mod checkpoint;
#[path = "api/client.rs"]
mod client;
#[path = "api/compare.rs"]
mod compare;
#[path = "api/console_pages.rs"]
mod console_pages;
#[path = "api/lifecycle.rs"]
mod lifecycle;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/orgs.rs"]
mod orgs;
#[path = "api/pg_cluster.rs"]
mod pg_cluster;
#[path = "api/privacy.rs"]
mod privacy;
#[path = "api/request_frames.rs"]
mod request_frames;
#[path = "api/tokens.rs"]
mod tokens;

mod backend {
    pub fn new_database() -> Option<String> {
        Some(crate::pg_cluster::shared().new_database())
    }
}
