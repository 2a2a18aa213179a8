//! End-to-end tests of the keyhost: a real server on 127.0.0.1:0 over a real SQLite file.
//! `tests/api_pg.rs` runs the same modules over a real PostgreSQL database.

mod answer_keys;
mod audit;
mod bootstrap;
mod checkpoint;
mod client;
mod compare;
mod console_pages;
mod disclosure;
mod lifecycle;
mod limits;
mod openapi;
mod orgs;
mod privacy;
mod request_frames;
mod tokens;

/// Where each test keyhost keeps its state: here `keyhost.db` in its data dir (the same
/// modules run on PostgreSQL in `tests/api_pg.rs`).
mod backend {
    pub fn new_database() -> Option<String> {
        None
    }
}
