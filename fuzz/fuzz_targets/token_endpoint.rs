//! `RefreshGrant` over a `service_fn` token endpoint answering an arbitrary status, headers and
//! body.
//!
//! Input: a flags byte (bits 0–1: public client / `client_secret_basic` / `client_secret_post`;
//! bit 2: a scope and a resource; bit 3: a 64-byte body limit), then
//! `STATUS\nname: value\n…\n\nbody`.
//!
//! Invariants: no panic; the outcome is `Ok` or a typed `GrantError` that keeps the endpoint's
//! status; the token request is a well-formed refresh grant (POST, form body with the refresh
//! token, the client authentication asked for); 5xx/429 are `Unavailable` (`Unparseable` when
//! the body is over the limit), transient either way; a non-2xx answer is
//! never `Ok` and never a rotation; `invalid_grant` only comes from a 4xx; a canonical 2xx JSON
//! token response with a non-empty bearer `access_token` parses, with its refresh token and
//! scope; no `Debug`/`Display` shows the refresh token, the client secret, or a canary token from
//! the answer.
#![no_main]

use std::convert::Infallible;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::service_fn;
use tower_bearer::upstream::{
    grant::{GrantError, RefreshGrant, Refresher},
    store::TokenSecret,
};
use tower_bearer_fuzz::*;

const REFRESH_TOKEN: &str = "rt-secret-9d1e";
const CLIENT_SECRET: &str = "client-secret-51c0";

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let answer = Answer::parse(input.rest());
    let auth = flags & 0x03;

    let reply = answer.clone();
    let endpoint = service_fn(move |request: Request<Full<Bytes>>| {
        let reply = reply.clone();
        async move {
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.headers()[header::CONTENT_TYPE],
                "application/x-www-form-urlencoded"
            );
            let authorization = request.headers().get(header::AUTHORIZATION).cloned();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let form = String::from_utf8(body.to_vec()).expect("the form is ASCII");
            assert!(
                form.split('&').any(|p| p == "grant_type=refresh_token"),
                "{form}"
            );
            assert!(
                form.split('&')
                    .any(|p| p == format!("refresh_token={REFRESH_TOKEN}"))
            );
            assert!(form.split('&').any(|p| p == "client_id=fuzz-client") || auth == 1);
            match auth {
                1 => {
                    let basic = format!(
                        "Basic {}",
                        STANDARD.encode(format!("fuzz-client:{CLIENT_SECRET}"))
                    );
                    assert_eq!(
                        authorization.as_ref().map(|v| v.as_bytes()),
                        Some(basic.as_bytes())
                    );
                    assert!(authorization.unwrap().is_sensitive());
                    assert!(!form.contains(CLIENT_SECRET));
                }
                2 => {
                    assert!(authorization.is_none());
                    assert!(
                        form.split('&')
                            .any(|p| p == format!("client_secret={CLIENT_SECRET}"))
                    );
                }
                _ => {
                    assert!(authorization.is_none());
                    assert!(!form.contains("client_secret"));
                }
            }
            Ok::<_, Infallible>(reply.response())
        }
    });
    let mut grant = RefreshGrant::new(
        tower_bearer::http_client::HttpClient::new(endpoint),
        "https://idp.example/token".parse().unwrap(),
        "fuzz-client",
    );
    grant = match auth {
        1 => grant.client_secret_basic(CLIENT_SECRET),
        2 => grant.client_secret_post(CLIENT_SECRET),
        _ => grant,
    };
    if flags & 0x04 != 0 {
        grant = grant
            .scope("files.read offline_access")
            .resource("https://api.example/");
    }
    let limit = if flags & 0x08 != 0 { 64 } else { 64 * 1024 };
    grant = grant.body_limit(limit);
    assert_absent(
        "RefreshGrant's Debug",
        format!("{grant:?}").as_bytes(),
        CLIENT_SECRET,
    );

    let outcome = block_on(grant.refresh(&TokenSecret::new(REFRESH_TOKEN)));
    let debug = match &outcome {
        Ok(response) => format!("{response:?}"),
        Err(error) => format!("{error:?} {error}"),
    };
    assert_absent("the outcome's Debug", debug.as_bytes(), REFRESH_TOKEN);
    assert_absent("the outcome's Debug", debug.as_bytes(), CLIENT_SECRET);
    assert_absent("the outcome's Debug", debug.as_bytes(), CANARY);

    let status = answer.status;
    if let Err(error) = &outcome {
        assert_eq!(
            error.status(),
            Some(status),
            "the endpoint's status was lost: {error}"
        );
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // (A body over the limit is `Unparseable` whatever the status: still transient, but
        // the endpoint's `Retry-After` is not kept.)
        let oversize = answer.body.len() > limit;
        assert!(
            matches!(outcome, Err(GrantError::Unavailable { .. }))
                || (oversize && matches!(outcome, Err(GrantError::Unparseable { .. }))),
            "{status} is not Unavailable"
        );
        assert!(outcome.as_ref().unwrap_err().is_transient());
    }
    if !status.is_success() {
        assert!(outcome.is_ok() == false, "a {status} answer gave a token");
        assert!(!matches!(
            outcome,
            Err(GrantError::RefreshTokenRotated { .. })
        ));
    }
    if matches!(outcome, Err(GrantError::InvalidGrant { .. })) {
        assert!(status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS);
        assert!(outcome.as_ref().unwrap_err().needs_reauthorization());
    }
    if let Err(GrantError::RefreshTokenRotated {
        error,
        refresh_token,
    }) = &outcome
    {
        assert!(
            !matches!(**error, GrantError::RefreshTokenRotated { .. }),
            "nested rotation"
        );
        assert!(!refresh_token.expose_secret().is_empty());
    }

    // The oracle for a well-formed token response: canonical JSON (sorted keys, no duplicates,
    // no whitespace), so that serde_json's `Value` sees exactly what the grant sees.
    if status.is_success() && answer.body.len() <= limit {
        let Ok(value) = serde_json::from_slice::<Value>(&answer.body) else {
            return;
        };
        if serde_json::to_vec(&value).ok().as_deref() != Some(&answer.body[..]) {
            return;
        }
        let Some(object) = value.as_object() else {
            return;
        };
        let string_or_null = |name: &str| {
            object
                .get(name)
                .is_none_or(|v| v.is_string() || v.is_null())
        };
        let access = object
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bearer = object.get("token_type").is_none_or(|t| {
            t.is_null() || t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        });
        let expires_ok = object
            .get("expires_in")
            .is_none_or(|v| v.is_null() || v.is_number() || v.is_string());
        if !access.is_empty()
            && bearer
            && expires_ok
            && string_or_null("refresh_token")
            && string_or_null("scope")
        {
            let response = outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("a well-formed token response did not parse: {e}"));
            assert_eq!(response.access_token().expose_secret(), access);
            let rotated = object
                .get("refresh_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty());
            assert_eq!(
                response.refresh_token().map(TokenSecret::expose_secret),
                rotated
            );
            assert_eq!(
                response.scope(),
                object.get("scope").and_then(Value::as_str)
            );
        }
    }
});
