//! The HTTP face of the simulator: one fallback handler so that every
//! request, whatever its path, passes the rate window and is counted; then
//! `/api/v4/leads` (fail injection, auth, churn, live offset paging) and
//! `/api/v4/account`. Decisions are made under the state lock in plain
//! synchronous code; the lock is released before the response is built.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::account::now_unix;
use super::events::EventQuery;
use super::generator::ACCOUNT_ID;
use super::query::{self, ListQuery};
use super::{Shared, State as SimState};

const LEADS: &str = "/api/v4/leads";
const ACCOUNT: &str = "/api/v4/account";
const EVENTS: &str = "/api/v4/events";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn json_body(status: StatusCode, content_type: &'static str, v: &Value) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => respond(status, Some(content_type), s),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    json_body(
        status,
        "application/problem+json",
        &json!({
            "title": title,
            "type": format!("https://httpstatus.es/{}", status.as_u16()),
            "status": status.as_u16(),
            "detail": detail,
        }),
    )
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "Invalid access token")
}

fn too_many() -> Response {
    respond(
        StatusCode::TOO_MANY_REQUESTS,
        Some("text/plain; charset=utf-8"),
        "Too Many Requests".to_string(),
    )
}

fn injected_failure(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    respond(
        status,
        Some("text/html"),
        format!(
            "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        ),
    )
}

fn bad_request(path: &str, detail: &str) -> Response {
    json_body(
        StatusCode::BAD_REQUEST,
        "application/problem+json",
        &json!({
            "validation-errors": [{
                "request_id": "0",
                "errors": [{"code": "InvalidValue", "path": path, "detail": detail}],
            }],
            "title": "Bad Request",
            "type": "https://httpstatus.es/400",
            "status": 400,
            "detail": "Request validation failed",
        }),
    )
}

/// Whether the `Authorization` header carries the accepted token.
fn authorized(st: &SimState, headers: &HeaderMap) -> bool {
    let Some(token) = st.control.token.as_deref() else {
        return false;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .and_then(|_| v.get(7..))
        })
        .is_some_and(|given| given.trim() == token)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    {
        let mut st = shared.lock();
        st.in_flight += 1;
        st.stats.max_in_flight = st.stats.max_in_flight.max(st.in_flight);
    }
    let resp = dispatch(&shared, &method, &uri, &headers);
    let status = resp.status();
    let latency = {
        let mut st = shared.lock();
        match status {
            StatusCode::TOO_MANY_REQUESTS => st.stats.responses_429 += 1,
            StatusCode::UNAUTHORIZED => st.stats.responses_401 += 1,
            _ => {}
        }
        st.control.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    shared.lock().in_flight -= 1;
    tracing::trace!(%method, %uri, %status, "simulator answered");
    resp
}

fn dispatch(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path();
    let raw = uri.query();
    let mut st = shared.lock();
    let now = Instant::now();
    st.stats.requests += 1;
    let is_lead_list = path == LEADS && method == Method::GET;
    if is_lead_list {
        st.stats.lead_requests += 1;
    }
    let in_window = st.window.arrive(now);
    st.stats.max_requests_in_any_second = st.stats.max_requests_in_any_second.max(in_window);
    if in_window > u64::from(st.rate_limit) {
        return too_many();
    }
    match path {
        LEADS if is_lead_list => leads(shared, st, raw, headers),
        ACCOUNT if method == Method::GET => {
            if !authorized(&st, headers) {
                return unauthorized();
            }
            drop(st);
            account(shared, raw)
        }
        EVENTS if method == Method::GET => {
            if !authorized(&st, headers) {
                return unauthorized();
            }
            let q = match EventQuery::parse(raw) {
                Ok(q) => q,
                Err(e) => return bad_request(&e.path, &e.detail),
            };
            let (items, more) = st.account.events_page(&q);
            drop(st);
            listing(shared, EVENTS, raw, q.page, more, "events", items)
        }
        LEADS | ACCOUNT | EVENTS => problem(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        _ => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn leads(
    shared: &Shared,
    mut st: std::sync::MutexGuard<'_, SimState>,
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if st.control.fail_next > 0 {
        st.control.fail_next -= 1;
        let status = st.control.fail_status;
        return injected_failure(status);
    }
    if !authorized(&st, headers) {
        return unauthorized();
    }
    if let Some(left) = st.control.revoke_after {
        let left = left.saturating_sub(1);
        if left == 0 {
            st.control.token = None;
            st.control.revoke_after = None;
        } else {
            st.control.revoke_after = Some(left);
        }
    }
    let q = match ListQuery::parse(raw) {
        Ok(q) => q,
        Err(e) => return bad_request(&e.path, &e.detail),
    };
    let churn = st.control.churn;
    if churn > 0 {
        st.account.churn(churn);
    }
    let (items, more) = st.account.page(&q);
    drop(st);
    listing(shared, LEADS, raw, q.page, more, "leads", items)
}

/// A HAL list page: 204 when empty, else `_page`, `_links` (with `next` when
/// more items follow) and `_embedded.<key>`.
fn listing(
    shared: &Shared,
    path: &str,
    raw: Option<&str>,
    page: u64,
    more: bool,
    key: &str,
    items: Vec<Value>,
) -> Response {
    if items.is_empty() {
        return respond(StatusCode::NO_CONTENT, None, String::new());
    }
    let base = &shared.base_url;
    let mut links = serde_json::Map::new();
    links.insert(
        "self".into(),
        json!({"href": query::page_href(base, path, raw, page)}),
    );
    if more {
        links.insert(
            "next".into(),
            json!({"href": query::page_href(base, path, raw, page.saturating_add(1))}),
        );
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(key.to_string(), Value::Array(items));
    json_body(
        StatusCode::OK,
        "application/hal+json",
        &json!({
            "_page": page,
            "_links": links,
            "_embedded": embedded,
        }),
    )
}

fn account(shared: &Shared, raw: Option<&str>) -> Response {
    let mut body = json!({
        "id": ACCOUNT_ID,
        "name": "Simulated account",
        "subdomain": "simulated",
        "created_at": 1_577_836_800,
        "created_by": 0,
        "updated_at": now_unix(),
        "updated_by": 0,
        "current_user_id": 9_000_001,
        "country": "US",
        "currency": "USD",
        "currency_symbol": "$",
        "customers_mode": "disabled",
        "is_unsorted_on": true,
        "is_loss_reason_enabled": true,
        "is_helpbot_enabled": false,
        "is_technical_account": false,
        "contact_name_display_order": 1,
        "_links": {"self": {"href": format!("{}{ACCOUNT}", shared.base_url)}},
    });
    let with_dt = query::pairs(raw.unwrap_or(""))
        .iter()
        .any(|(k, v)| k == "with" && v.split(',').any(|w| w.trim() == "datetime_settings"));
    if with_dt && let Some(obj) = body.as_object_mut() {
        obj.insert(
            "_embedded".into(),
            json!({"datetime_settings": {
                "date_pattern": "d.m.Y H:i",
                "short_date_pattern": "d.m.Y",
                "short_time_pattern": "H:i",
                "date_format": "d.m.Y",
                "time_format": "H:i:s",
                "timezone": "UTC",
                "timezone_offset": "+00:00",
            }}),
        );
    }
    json_body(StatusCode::OK, "application/hal+json", &body)
}
