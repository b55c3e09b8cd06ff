//! The proxy's own answers that are not about credentials (those are the emitter's): a bad
//! path, a body too large, a connect flow gone wrong. Small RFC 9457 problem documents.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};

/// `status` with a problem document titled `title`.
pub fn problem(status: StatusCode, title: &'static str) -> Response {
    let body =
        serde_json::json!({ "type": "about:blank", "title": title, "status": status.as_u16() });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
