//! Failures as trailers-only gRPC responses.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::{Emitter, Rendering};

/// gRPC's percent-encoding for `grpc-message`: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The gRPC status code for an HTTP failure status, per the wire contract.
pub(crate) fn code_for(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 5,        // NOT_FOUND
        500 => 13,       // INTERNAL
        502..=504 => 14, // UNAVAILABLE
        303 => 7,        // a redirect means nothing to a gRPC client: the link is not usable
        _ => 2,          // UNKNOWN
    }
}

/// HTTP 200 with `grpc-status` and `grpc-message` in the headers (trailers-only), keeping
/// `www-authenticate`, `proxy-status`, `retry-after` and `link` as metadata.
pub(crate) fn render(emitter: &Emitter, rendering: Rendering) -> Response<Bytes> {
    let mut headers = HeaderMap::new();
    emitter.write_headers(&rendering, &mut headers);
    headers.remove(http::header::LOCATION);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code_for(rendering.status)));
    let message = if emitter.verbose() && !rendering.detail.is_empty() {
        &*rendering.detail
    } else {
        rendering.title
    };
    let encoded = utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    if let Ok(value) = HeaderValue::try_from(encoded) {
        headers.insert("grpc-message", value);
    }
    let mut response = Response::new(Bytes::new());
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_mapping() {
        for (http, grpc) in [
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 5),
            (503, 14),
            (500, 13),
            (502, 14),
            (504, 14),
        ] {
            assert_eq!(
                code_for(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }
}
