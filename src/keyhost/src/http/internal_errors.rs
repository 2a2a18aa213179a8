//! Internal errors are logged as they leave the keyhost, as axum's error-handling example does:
//! [`ApiError::internal`] keeps the cause in the error, its response carries it in its
//! extensions ([`InternalCause`], never in the body), and [`log_internal_errors`], a middleware
//! around every route, logs it with the request's method and path ([`log_internal`]: a `tracing`
//! event, or stderr without a subscriber).
//!
//! [`ApiError::internal`]: crate::error::ApiError::internal

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{log_internal, InternalCause};

/// The middleware: run the request, then log the cause its response carries, if any.
pub async fn log_internal_errors(req: Request, next: Next) -> Response {
    let during = format!("{} {}", req.method(), req.uri().path());
    let response = next.run(req).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        log_internal(&during, cause);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use axum::Router;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata};

    use super::log_internal_errors;
    use crate::error::ApiError;

    /// A subscriber that keeps the fields of the keyhost's events, as `name=value` lines.
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0 += &format!("{}={value:?}\n", field.name());
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if !event.metadata().target().starts_with("ghostpii_keyhost") {
                return; // axum's and hyper's own events (connections accepted, ...)
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().expect("not poisoned").push(fields.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    async fn failing() -> ApiError {
        ApiError::internal("reading the budget ledger", &"disk I/O error")
    }

    async fn missing() -> ApiError {
        ApiError::not_found("no such dataset")
    }

    /// One HTTP/1.1 GET over a plain socket: the whole response.
    fn get_raw(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: keyhost\r\nConnection: close\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[tokio::test]
    async fn an_internal_error_is_logged_once_with_its_request_and_its_cause_is_never_sent() {
        let logged = Arc::new(Mutex::new(Vec::new()));
        let _subscriber = tracing::subscriber::set_default(Capture(logged.clone()));
        let app = Router::new()
            .route("/failing", get(failing))
            .route("/missing", get(missing))
            .layer(axum::middleware::from_fn(log_internal_errors));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let failed = tokio::task::spawn_blocking(move || get_raw(addr, "/failing"))
            .await
            .expect("request");
        assert!(failed.starts_with("HTTP/1.1 500"), "{failed}");
        assert!(failed.contains(r#""reason":"internal""#), "{failed}");
        assert!(!failed.contains("disk I/O error"), "the cause is not sent: {failed}");
        let refused = tokio::task::spawn_blocking(move || get_raw(addr, "/missing"))
            .await
            .expect("request");
        assert!(refused.starts_with("HTTP/1.1 404"), "{refused}");

        let logged = logged.lock().expect("not poisoned").clone();
        assert_eq!(logged.len(), 1, "only the internal error is logged: {logged:?}");
        assert!(logged[0].contains(r#"during="GET /failing""#), "{logged:?}");
        assert!(
            logged[0].contains(r#"cause="reading the budget ledger: disk I/O error""#),
            "{logged:?}"
        );
    }
}
