//! End-to-end tests of the keyhost: a real server on 127.0.0.1:0 over a real SQLite file.

mod answer_keys;
mod audit;
mod bootstrap;
mod checkpoint;
mod client;
mod compare;
mod lifecycle;
mod limits;
mod openapi;
mod privacy;
mod tokens;
