//! The keyhost over HTTP: `routes/` (the `/v1` JSON API), `console/` (the HTML console, which
//! calls the API's handlers), `extract` (the caller, from its bearer token), `rate_limit` (the
//! failed-authentication limit), and `server` (listening, background tasks, stopping).

pub mod console;
pub mod extract;
pub mod rate_limit;
pub mod routes;
pub mod server;
