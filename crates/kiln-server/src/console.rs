//! The web console's side of the edge: its built assets, embedded in the binary and
//! served at `/console/`, and sign-in and sign-out, which hand out and revoke
//! temporary credentials. Everything else the console does is EC2 API calls, signed
//! with those credentials like any SDK's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use crate::AppState;

/// The console as `npm run build` left it in `console/dist`, compiled in. A binary
/// built without it (no Node on the machine) serves `NOT_BUILT` instead.
#[derive(rust_embed::Embed)]
#[folder = "../../console/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Kiln console</title>\
<body><h1>The console was not built</h1><p>This kiln binary was built without the console's assets. \
Build them with <code>cd console &amp;&amp; npm ci &amp;&amp; npm run build</code> (or run <code>scripts/up.sh</code>), \
then build kiln again. The EC2 API works without them.</p></body></html>";

/// What the browser may load: this origin only (styles may be inline).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Failed sign-ins an account name may have in one window before it is refused
/// for the rest of the window.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Failed sign-ins per account name, in this process. A small map rather than a
/// rate-limiting crate: only failures count, and a success clears them.
#[derive(Default)]
pub(crate) struct SignInGuard {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInGuard {
    /// Seconds until `name` may try again, if it is shut out now.
    fn shut_out(&self, name: &str) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        map.get(name)
            .filter(|(n, _)| *n >= MAX_FAILURES)
            .map(|(_, since)| FAILURE_WINDOW.saturating_sub(since.elapsed()).as_secs().max(1))
    }

    fn failed(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(name.to_owned()).or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    fn succeeded(&self, name: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(json!({ "code": code, "message": message })))
        .into_response()
}

/// A string field of a JSON body.
fn field(body: &serde_json::Value, name: &str) -> Option<String> {
    body.get(name).and_then(|v| v.as_str()).map(str::to_owned)
}

/// `POST /console/api/signin` `{account, password}`: temporary credentials for 12 hours.
pub(crate) async fn sign_in(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "MalformedInput",
            "The body must be JSON: {\"account\", \"password\"}",
        );
    };
    let (Some(name), Some(password)) = (field(&body, "account"), field(&body, "password")) else {
        return json_error(StatusCode::BAD_REQUEST, "MissingParameter", "Give the account name and the password");
    };
    if name.len() > 64 || password.len() > 1024 {
        return json_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "The account name or password is too long",
        );
    }
    if let Some(wait) = state.sign_ins.shut_out(&name) {
        tracing::warn!(account = %name, "console sign-in refused: too many failures");
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttling",
            &format!("Too many failed sign-ins for this account. Try again in {wait} s."),
        );
    }
    let cloud = state.cloud.clone();
    let who = name.clone();
    let result = tokio::task::spawn_blocking(move || cloud.sign_in(&who, &password)).await;
    match result {
        Ok(Ok(s)) => {
            state.sign_ins.succeeded(&name);
            tracing::info!(account = %name, access_key = %s.access_key_id, "console sign-in");
            (
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(json!({
                    "accessKeyId": s.access_key_id,
                    "secretAccessKey": s.secret,
                    "sessionToken": s.session_token,
                    "expiration": s.expiration,
                    "accountId": s.account_id,
                    "accountName": name,
                })),
            )
                .into_response()
        }
        Ok(Err(kiln_control::Error::Unauthorized(m))) => {
            state.sign_ins.failed(&name);
            tracing::info!(account = %name, "console sign-in failed");
            json_error(StatusCode::UNAUTHORIZED, "AuthFailure", &m)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console sign-in");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The sign-in could not be completed")
        }
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The sign-in could not be completed"),
    }
}

/// `POST /console/api/signout` `{accessKeyId, sessionToken}`: the credentials stop
/// working at once.
pub(crate) async fn sign_out(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let (Some(key), Some(token)) = (field(&body, "accessKeyId"), field(&body, "sessionToken")) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "Give the session's accessKeyId and sessionToken",
        );
    };
    let cloud = state.cloud.clone();
    match tokio::task::spawn_blocking(move || cloud.sign_out(&key, &token)).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        _ => json_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The sign-out could not be completed"),
    }
}

/// `/console` → `/console/`.
pub(crate) async fn to_console() -> Redirect {
    Redirect::permanent("/console/")
}

pub(crate) async fn index() -> Response {
    serve("index.html")
}

/// An asset by path; any other path under `/console/` is the app (client routes).
pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}

/// `KILN_CONSOLE_DIR`, for work on the console: its files are read from there at
/// each request instead of the copy compiled in.
fn console_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("KILN_CONSOLE_DIR").map(std::path::PathBuf::from)).as_deref()
}

/// A file of the console: from `KILN_CONSOLE_DIR` when set (never outside it), else
/// compiled in.
fn lookup(path: &str) -> Option<(Vec<u8>, String)> {
    let mime = || mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned();
    match console_dir() {
        Some(dir) => {
            let safe = std::path::Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe {
                return None;
            }
            std::fs::read(dir.join(path)).ok().map(|data| (data, mime()))
        }
        None => Assets::get(path).map(|f| (f.data.into_owned(), f.metadata.mimetype().to_owned())),
    }
}

fn serve(path: &str) -> Response {
    let ((data, mime), name) = match lookup(path) {
        Some(f) => (f, path),
        // A built file that is not there (an old page after an upgrade): no app in
        // its place, which the browser would take for a script.
        None if path.starts_with("assets/") => {
            return (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-cache")], "Not found").into_response()
        }
        None => match lookup("index.html") {
            Some(f) => (f, "index.html"),
            None => {
                return (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                        (header::CONTENT_SECURITY_POLICY, CSP),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    NOT_BUILT,
                )
                    .into_response()
            }
        },
    };
    // Vite names built files by their content: they never change under one name.
    let cache = if name.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, cache.to_owned()),
            (header::CONTENT_SECURITY_POLICY, CSP.to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        data,
    )
        .into_response()
}
