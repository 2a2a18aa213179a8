//! The owner's web console at `/console`: server-rendered HTML (no script), served by every
//! keyhost next to the JSON API.
//!
//! Every change the console makes goes through the API's own route handlers ([`api`]), with
//! the signed-in identity as the caller: the same policy checks (`policy.rs`), validation and
//! audit entries, so the console and the API cannot disagree. Pages only read.
//!
//! Files: `session` (sign-in, cookie, CSRF), `layout` (page frame, headers), `html`
//! (escaping), `charts` (inline SVG), and one file per resource: `datasets`, `grants`,
//! `budgets`, `identities`, `audit`, `checkpoint`.

mod api;
mod audit;
mod bare;
mod budgets;
mod charts;
mod checkpoint;
mod cookies;
mod datasets;
mod grants;
pub mod html;
mod identities;
mod layout;
mod lookup;
mod session;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::state::AppState;

/// The console's routes, mounted by [`crate::http::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/datasets") }))
        .route("/console/", get(|| async { Redirect::to("/console/datasets") }))
        .route("/console/style.css", get(bare::stylesheet))
        .route("/console/login", get(session::login_form).post(session::login))
        .route("/console/logout", post(session::logout))
        .route("/console/datasets", get(datasets::list))
        .route("/console/datasets/{dataset}", get(datasets::show))
        .route(
            "/console/datasets/{dataset}/grants",
            get(grants::page).post(grants::create),
        )
        .route("/console/grants/{grant_id}/revoke", post(grants::revoke))
        .route("/console/datasets/{dataset}/budgets", get(budgets::page))
        .route("/console/datasets/{dataset}/budgets/set", post(budgets::set))
        .route("/console/datasets/{dataset}/budgets/reset", post(budgets::reset))
        .route("/console/identities", get(identities::page).post(identities::create))
        .route("/console/tokens", post(identities::issue))
        .route("/console/tokens/{token_id}/revoke", post(identities::revoke))
        .route("/console/tokens/rotate", post(identities::rotate))
        .route("/console/audit", get(audit::page))
        .route("/console/checkpoint", get(checkpoint::page))
        .layer(Extension(session::Sessions::default()))
}
