//! The HTTP face of the simulator: one fallback handler so that every
//! request, whatever its path, is logged, passes the rate window, the
//! switchable faults (block, unpaid, throttle burst, queued faults) and is
//! counted; then the record listings `/api/v4/leads`, `/api/v4/contacts`
//! and `/api/v4/companies` (auth, churn of that kind, live offset paging,
//! one code for the three), `/api/v4/events` and the structure endpoints
//! of `directory` (`/api/v4/account`, pipelines, the custom fields of each
//! kind, users, loss reasons, tags). Decisions are made under the
//! state lock in plain synchronous code as an [`Answer`] (text, so a fault
//! can cut it); the lock is released before the body is serialized. Every
//! response carries a `Date` header from the server's clock.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::classify::RequestKind;
use super::directory::{self, Reply};
use super::events::EventQuery;
use super::faults::{Fault, RetryAfter, cut_in_middle, imf_fixdate};
use super::kind::RecordKind;
use super::query::{self, ListQuery};
use super::{Shared, State as SimState};

const EVENTS: &str = "/api/v4/events";
const HAL: &str = "application/hal+json";
const PROBLEM: &str = "application/problem+json";

type Guard<'a> = std::sync::MutexGuard<'a, SimState>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// An answer decided under the lock, before it becomes a response.
struct Answer {
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
    /// the `Retry-After` header, when one is sent
    retry_after: Option<String>,
    /// close the connection instead of answering
    dropped: bool,
}

impl Answer {
    /// The status the request log records: 0 for a dropped connection.
    fn logged_status(&self) -> u16 {
        if self.dropped {
            0
        } else {
            self.status.as_u16()
        }
    }

    fn into_response(self, date: &str) -> Response {
        if self.dropped {
            // A body that fails before its first byte makes hyper abort the
            // connection without flushing the head: the client reads no
            // HTTP answer at all.
            let failing =
                futures_util::stream::iter([Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulated dropped connection",
                ))]);
            return Response::new(Body::from_stream(failing));
        }
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        if let Some(ct) = self.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Ok(v) = HeaderValue::from_str(date) {
            headers.insert(header::DATE, v);
        }
        if let Some(v) = self
            .retry_after
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: String) -> Answer {
    Answer {
        status,
        content_type,
        body,
        retry_after: None,
        dropped: false,
    }
}

fn json_body(status: StatusCode, content_type: &'static str, v: &Value) -> Answer {
    match serde_json::to_string(v) {
        Ok(s) => respond(status, Some(content_type), s),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

fn problem(status: StatusCode, detail: &str) -> Answer {
    let title = status.canonical_reason().unwrap_or("Error");
    json_body(
        status,
        PROBLEM,
        &json!({
            "title": title,
            "type": format!("https://httpstatus.es/{}", status.as_u16()),
            "status": status.as_u16(),
            "detail": detail,
        }),
    )
}

fn unauthorized() -> Answer {
    problem(StatusCode::UNAUTHORIZED, "Invalid access token")
}

/// The rate window's 429: plain text, no `Retry-After`.
fn too_many() -> Answer {
    respond(
        StatusCode::TOO_MANY_REQUESTS,
        Some("text/plain; charset=utf-8"),
        "Too Many Requests".to_string(),
    )
}

/// nginx's HTML error page for `status` (500 for a code outside
/// 200..=599, which no server sends as a final answer).
fn nginx_page(status: u16) -> Answer {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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

fn bad_request(path: &str, detail: &str) -> Answer {
    json_body(
        StatusCode::BAD_REQUEST,
        PROBLEM,
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
    // Kommo counts a request when it comes in, not when a worker gets to it:
    // stamped before waiting for the lock that another answer may hold.
    let arrived = Instant::now();
    {
        let mut st = shared.lock();
        st.in_flight += 1;
        st.stats.max_in_flight = st.stats.max_in_flight.max(st.in_flight);
    }
    let (answer, seq) = dispatch(&shared, arrived, &method, &uri, &headers);
    let status = answer.logged_status();
    let (latency, date) = {
        let mut st = shared.lock();
        match status {
            429 => st.stats.responses_429 += 1,
            401 => st.stats.responses_401 += 1,
            _ => {}
        }
        st.log.answered(seq, status);
        (st.control.latency, imf_fixdate(st.account.now()))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    shared.lock().in_flight -= 1;
    tracing::trace!(%method, %uri, status, "simulator answered");
    answer.into_response(&date)
}

/// Logs and counts the request, then answers it: rate window, block and
/// unpaid, throttle burst, queued faults, then normal handling. Returns the
/// answer and the request's sequence number in the log.
fn dispatch(
    shared: &Shared,
    arrived: Instant,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> (Answer, u64) {
    let path = uri.path();
    let raw = uri.query();
    let kind = RequestKind::classify(method == Method::GET, path, raw);
    let mut st = shared.lock();
    let now = Instant::now();
    let seq = st.log.arrive(now, path, raw.unwrap_or(""));
    st.stats.requests += 1;
    let mut bulk_due = false;
    if let Some(record_kind) = kind.record_kind() {
        st.stats.count_request_of(record_kind);
    }
    if kind.is_leads() {
        bulk_due = st.lead_request_arrived();
    }
    let in_window = st.window.arrive(arrived);
    st.stats.max_requests_in_any_second = st.stats.max_requests_in_any_second.max(in_window);
    let answer = if in_window > u64::from(st.rate_limit) {
        drop(st);
        too_many()
    } else {
        match st.faults.decide(kind, now) {
            Some(fault) => faulted(shared, st, fault, method, path, raw, kind),
            None => normal(shared, st, method, path, raw, headers, kind),
        }
    };
    if bulk_due {
        shared.lock().run_scheduled_bulk_update();
    }
    (answer, seq)
}

/// The real answer: auth, then the endpoint.
fn normal(
    shared: &Shared,
    mut st: Guard<'_>,
    method: &Method,
    path: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    kind: RequestKind,
) -> Answer {
    if known(path) && method == Method::GET && !authorized(&st, headers) {
        return unauthorized();
    }
    let Some(record_kind) = kind.record_kind() else {
        return real_answer(shared, st, method, path, raw, kind);
    };
    if let (RecordKind::Lead, Some(left)) = (record_kind, st.control.revoke_after) {
        let left = left.saturating_sub(1);
        if left == 0 {
            st.control.token = None;
            st.control.revoke_after = None;
        } else {
            st.control.revoke_after = Some(left);
        }
    }
    let churn = st.control.churn[record_kind];
    if churn > 0 && list_query(&st, raw).is_ok() {
        st.account.churn(record_kind, churn);
    }
    real_answer(shared, st, method, path, raw, kind)
}

/// The answer `fault` gives instead of the real one.
fn faulted(
    shared: &Shared,
    st: Guard<'_>,
    fault: Fault,
    method: &Method,
    path: &str,
    raw: Option<&str>,
    kind: RequestKind,
) -> Answer {
    match fault {
        Fault::EmptyLeads | Fault::EmptyList => match kind.list_key() {
            Some(key) => {
                drop(st);
                empty_page(shared, path, raw, key)
            }
            None if kind == RequestKind::Other => {
                drop(st);
                empty_page(shared, path, raw, "leads")
            }
            None => real_answer(shared, st, method, path, raw, kind),
        },
        Fault::EmptyObject => respond(StatusCode::OK, Some(HAL), "{}".to_string()),
        Fault::ShortPage => {
            let real = real_answer(shared, st, method, path, raw, kind);
            match kind.list_key() {
                Some(key) => short_page(real, key),
                None => real,
            }
        }
        Fault::TruncatedBody => {
            let real = real_answer(shared, st, method, path, raw, kind);
            let body = if real.body.is_empty() {
                format!("{{\"_page\":{},\"_emb", requested_page(raw))
            } else {
                cut_in_middle(&real.body).to_string()
            };
            respond(StatusCode::OK, real.content_type.or(Some(HAL)), body)
        }
        Fault::StringId | Fault::StringEntityId => {
            let field = if fault == Fault::StringId {
                "id"
            } else {
                "entity_id"
            };
            let real = real_answer(shared, st, method, path, raw, kind);
            let key = kind.list_key();
            if key.is_none() && kind != RequestKind::Account {
                return real;
            }
            edit_json(real, |body| {
                let element = match key {
                    Some(key) => body
                        .pointer_mut(&format!("/_embedded/{key}/0"))
                        .and_then(Value::as_object_mut),
                    None => body.as_object_mut(),
                };
                if let Some(element) = element
                    && let Some(Value::Number(n)) = element.get(field)
                {
                    let text = n.to_string();
                    element.insert(field.to_string(), Value::String(text));
                }
            })
        }
        Fault::WithoutIsDeleted | Fault::NullEnums => {
            let (field, value) = if fault == Fault::NullEnums {
                ("enums", Some(Value::Null))
            } else {
                ("is_deleted", None)
            };
            let real = real_answer(shared, st, method, path, raw, kind);
            let Some(key) = kind.list_key() else {
                return real;
            };
            edit_json(real, |body| {
                let elements = body
                    .pointer_mut(&format!("/_embedded/{key}"))
                    .and_then(Value::as_array_mut);
                for element in elements.into_iter().flatten() {
                    if let Some(element) = element.as_object_mut() {
                        match &value {
                            Some(value) => element.insert(field.to_string(), value.clone()),
                            None => element.remove(field),
                        };
                    }
                }
            })
        }
        Fault::DroppedConnection => Answer {
            dropped: true,
            ..respond(StatusCode::OK, None, String::new())
        },
        Fault::TooManyRequests(retry_after) => {
            let retry_after = match retry_after {
                RetryAfter::None => None,
                RetryAfter::Seconds(s) => Some(s.to_string()),
                RetryAfter::HttpDate(s) => Some(imf_fixdate(
                    st.account
                        .now()
                        .saturating_add(i64::try_from(s).unwrap_or(i64::MAX)),
                )),
            };
            Answer {
                retry_after,
                ..nginx_page(429)
            }
        }
        Fault::Blocked => nginx_page(403),
        Fault::Unpaid => problem(StatusCode::PAYMENT_REQUIRED, "Account is not paid"),
        Fault::Status(code) => nginx_page(code),
    }
}

/// Whether `path` is one of the endpoints served (the others answer 404).
fn known(path: &str) -> bool {
    path == EVENTS || RecordKind::of_path(path).is_some() || directory::serves(path)
}

/// The list query a record listing answers for `raw` (filters dropped on
/// an account that ignores them), or the 400 its query gets.
fn list_query(st: &SimState, raw: Option<&str>) -> Result<ListQuery, Answer> {
    let mut q = ListQuery::parse(raw).map_err(|e| bad_request(&e.path, &e.detail))?;
    if st.control.filters_ignored {
        q.drop_filters();
    }
    Ok(q)
}

/// A list page, computed under the lock and rendered after it.
struct Page {
    path: &'static str,
    /// the query of the request, for the `_links`
    raw: Option<String>,
    page: u64,
    more: bool,
    key: &'static str,
    items: Vec<Value>,
}

/// What the request would list (no auth check, no churn), or, for a
/// request that is no list, its real answer.
fn real_page(
    shared: &Shared,
    st: Guard<'_>,
    method: &Method,
    path: &str,
    raw: Option<&str>,
    kind: RequestKind,
) -> Result<Page, Answer> {
    match kind {
        RequestKind::Records(record_kind, _) => {
            let q = list_query(&st, raw)?;
            let (items, more) = st.account.page(record_kind, &q, Instant::now());
            Ok(Page {
                path: record_kind.path(),
                raw: raw.map(String::from),
                page: q.page,
                more,
                key: record_kind.list_key(),
                items,
            })
        }
        RequestKind::Events => {
            let q = EventQuery::parse(raw).map_err(|e| bad_request(&e.path, &e.detail))?;
            let (items, more) = st.account.events_page(&q);
            Ok(Page {
                path: EVENTS,
                raw: raw.map(String::from),
                page: q.page,
                more,
                key: "events",
                items,
            })
        }
        _ => Err(match path {
            p if directory::serves(p) && method == Method::GET => {
                let reply = directory::answer(&directory::Request {
                    structure: st.account.structure(),
                    base: &shared.base_url,
                    path: p,
                    raw,
                    now: st.account.now(),
                    users_forbidden: st.control.users_forbidden,
                });
                drop(st);
                match reply {
                    Reply::Json(v) => json_body(StatusCode::OK, HAL, &v),
                    Reply::NoContent => respond(StatusCode::NO_CONTENT, None, String::new()),
                    Reply::Forbidden(detail) => problem(StatusCode::FORBIDDEN, detail),
                    Reply::Invalid(e) => bad_request(&e.path, &e.detail),
                }
            }
            p if known(p) => problem(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            _ => problem(StatusCode::NOT_FOUND, "Not Found"),
        }),
    }
}

/// A HAL list page: 204 when empty, else `_page`, `_links` (with `next` when
/// more items follow) and `_embedded.<key>`.
fn listing(shared: &Shared, page: Page) -> Answer {
    if page.items.is_empty() {
        return respond(StatusCode::NO_CONTENT, None, String::new());
    }
    let base = &shared.base_url;
    let raw = page.raw.as_deref();
    let mut links = serde_json::Map::new();
    links.insert(
        "self".into(),
        json!({"href": query::page_href(base, page.path, raw, page.page)}),
    );
    if page.more {
        links.insert(
            "next".into(),
            json!({"href": query::page_href(base, page.path, raw, page.page.saturating_add(1))}),
        );
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(page.key.to_string(), Value::Array(page.items));
    json_body(
        StatusCode::OK,
        HAL,
        &json!({
            "_page": page.page,
            "_links": links,
            "_embedded": embedded,
        }),
    )
}

/// The real answer: a list page rendered, or the answer of what is no
/// list page.
fn real_answer(
    shared: &Shared,
    st: Guard<'_>,
    method: &Method,
    path: &str,
    raw: Option<&str>,
    kind: RequestKind,
) -> Answer {
    match real_page(shared, st, method, path, raw, kind) {
        Ok(page) => listing(shared, page),
        Err(answer) => answer,
    }
}

/// `answer` with its JSON body changed by `edit`; an answer whose body is
/// not JSON (a 204, an error page) is returned as it is.
fn edit_json(answer: Answer, edit: impl FnOnce(&mut Value)) -> Answer {
    match serde_json::from_str::<Value>(&answer.body) {
        Ok(mut body) if answer.status == StatusCode::OK => {
            edit(&mut body);
            json_body(answer.status, answer.content_type.unwrap_or(HAL), &body)
        }
        _ => answer,
    }
}

/// [`Fault::ShortPage`] of the real answer of a listing whose array is
/// `_embedded.<key>`: half its items, no `_links.next`; 204 for one item
/// or none.
fn short_page(real: Answer, key: &str) -> Answer {
    let items = serde_json::from_str::<Value>(&real.body)
        .ok()
        .and_then(|b| {
            b.pointer(&format!("/_embedded/{key}"))
                .map(|v| v.as_array().map_or(0, Vec::len))
        });
    match items {
        Some(n) if n >= 2 && real.status == StatusCode::OK => edit_json(real, |body| {
            if let Some(list) = body
                .pointer_mut(&format!("/_embedded/{key}"))
                .and_then(Value::as_array_mut)
            {
                list.truncate(n / 2);
            }
            if let Some(links) = body.get_mut("_links").and_then(Value::as_object_mut) {
                links.remove("next");
            }
        }),
        Some(_) => respond(StatusCode::NO_CONTENT, None, String::new()),
        // a 204 (nothing to cut) or an error answer
        None => real,
    }
}

/// The `page` a request asks for (the last one given; 1 without one).
fn requested_page(raw: Option<&str>) -> u64 {
    query::pairs(raw.unwrap_or(""))
        .iter()
        .rev()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

/// [`Fault::EmptyList`]: a valid page with `self` and `next` links and an
/// empty `_embedded.<key>`.
fn empty_page(shared: &Shared, path: &str, raw: Option<&str>, key: &str) -> Answer {
    let page = requested_page(raw);
    let base = &shared.base_url;
    json_body(
        StatusCode::OK,
        HAL,
        &json!({
            "_page": page,
            "_links": {
                "self": {"href": query::page_href(base, path, raw, page)},
                "next": {"href": query::page_href(base, path, raw, page.saturating_add(1))},
            },
            "_embedded": {key: []},
        }),
    )
}
