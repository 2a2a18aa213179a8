//! HTTP routes of the keyhost API (`/v1/...`). See ARCHITECTURE.md and the crate docs for
//! the contract.

mod answer_keys;
pub(crate) mod audit;
pub(crate) mod budget;
mod compute;
mod datasets;
pub(crate) mod grants;
pub(crate) mod identities;
mod info;
mod join_domains;
mod openapi;
pub(crate) mod tokens;

use crate::store::Connection;
use axum::Router;

use crate::domain::audit::NewEntry;
use crate::error::ApiResult;
use crate::state::AppState;

/// Declares every route once, as `method "path" => handler;`, and generates from that one list
/// both [`ROUTES`] and the routes of [`router`], so the two cannot disagree.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route of the API as `(method, path)`: the method in lower case (as the keys of
        /// an OpenAPI path item) and the path in template form (`{param}`, as both axum and
        /// OpenAPI write it). `openapi.json` lists exactly these (checked by the API tests).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub(crate) fn api_routes() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

api_routes! {
    get "/v1/openapi.json" => openapi::spec;
    get "/v1/info" => info::info;
    get "/v1/whoami" => info::whoami;
    post "/v1/identities" => identities::create;
    get "/v1/identities" => identities::list;
    post "/v1/identities/share" => identities::share;
    post "/v1/identities/delegate" => identities::delegate;
    post "/v1/tokens" => tokens::create;
    get "/v1/tokens" => tokens::list;
    post "/v1/tokens/rotate" => tokens::rotate;
    delete "/v1/tokens/{token_id}" => tokens::revoke;
    post "/v1/datasets" => datasets::create;
    get "/v1/datasets" => datasets::list;
    post "/v1/datasets/{dataset}/columns" => datasets::register_column;
    post "/v1/datasets/{dataset}/columns/{column}/rotate" => datasets::rotate_column;
    post "/v1/datasets/{dataset}/rids" => datasets::allocate_rids;
    post "/v1/join-domains" => join_domains::create;
    get "/v1/join-domains" => join_domains::list;
    post "/v1/join-domains/{name}/members" => join_domains::add_member;
    delete "/v1/join-domains/{name}/members/{member}" => join_domains::remove_member;
    post "/v1/join-domains/{name}/rotate" => join_domains::rotate;
    post "/v1/grants" => grants::create;
    get "/v1/grants" => grants::list;
    delete "/v1/grants/{grant_id}" => grants::revoke;
    post "/v1/answer-keys" => answer_keys::answer;
    put "/v1/fhe/server-key" => compute::upload_server_key;
    post "/v1/compute" => compute::compute;
    get "/v1/audit" => audit::list;
    get "/v1/audit/verify" => audit::verify;
    get "/v1/audit/checkpoint" => audit::checkpoint;
    get "/v1/audit/proof" => audit::proof;
    post "/v1/audit/receipt" => audit::receipt;
    get "/v1/budget" => budget::show;
    put "/v1/budget" => budget::set;
    post "/v1/budget/reset" => budget::reset;
}

/// Apply a permission check; a refusal is written to the audit log before it is returned.
fn guard(conn: &mut Connection, entry: &NewEntry, check: ApiResult<()>) -> ApiResult<()> {
    check.map_err(|e| crate::domain::audit::refuse(conn, entry.clone(), e))
}

/// The result of looking something up by name for the caller; a refusal (not found, not
/// visible, ambiguous) is written to the audit log before it is returned.
fn guard_found<T>(conn: &mut Connection, entry: &NewEntry, found: ApiResult<T>) -> ApiResult<T> {
    found.map_err(|e| crate::domain::audit::refuse(conn, entry.clone(), e))
}
