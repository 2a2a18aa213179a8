use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::domain::identities::Role;
use crate::http::extract::Caller;
use crate::state::AppState;

/// What `GET /v1/info` answers.
#[derive(Debug, Serialize)]
pub struct Info {
    pub keyhost_id: String,
    pub version: &'static str,
}

/// What `GET /v1/whoami` answers: the caller's identity and role on this keyhost.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    pub identity: String,
    pub role: Role,
    pub keyhost_id: String,
}

/// `GET /v1/info` (no authentication).
pub async fn info(State(st): State<AppState>) -> Json<Info> {
    Json(Info {
        keyhost_id: st.keyhost_id().to_owned(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /v1/whoami`
pub async fn whoami(State(st): State<AppState>, Caller(who): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        identity: who.name,
        role: who.role,
        keyhost_id: st.keyhost_id().to_owned(),
    })
}
