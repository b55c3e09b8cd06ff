//! The whole outbound stack — `EmitLayer` over a handler calling `RefreshAndRetryLayer` +
//! `ClassifyUpstreamLayer` (with the Power BI rule) — over a scripted provider and a scripted
//! refresher (`grant::refresher_fn`), with a `MemoryStore`, for 1–3 requests in a row.
//!
//! Input: a flags byte (bit 0: the link has a refresh token; bits 1–2: its expiry — none, in an
//! hour, within the skew, past; bits 3–4: 1–3 requests; bit 5: a connect URL; bit 6: the caller
//! accepts problem+json), then script lines, consumed in order:
//! - `P<status>|<www-authenticate>|<body>|<name: value>|…`: the provider's next answer
//!   (empty `www-authenticate` = none); `E`: the provider's next call fails (connection refused).
//!   When they run out the provider answers `200 ok`.
//! - `R ok <access> [<refresh>]`, `R grant`, `R client`, `R down`, `R parse`, `R timeout`,
//!   `R unreach`, `R rotated <refresh>`: the refresher's next answer. When they run out it
//!   answers `Unavailable` (503).
//!
//! Invariants: no panic; every result of the layers is an `Ok(response)` or an `UpstreamError`,
//! rendered by the emitter with the contract's status and a `Proxy-Status` naming our proxy
//! (and `Retry-After` on 503); a reauthorization failure carries no Bearer `error`; a passed-on
//! answer keeps no provider `WWW-Authenticate` and no forged `Proxy-Status`/`Link` of ours; the
//! provider only ever sees access tokens the store or refresher issued, never the caller's, and
//! the same body on a retry; per request the tokens are refreshed at most once (the refresher
//! asked at most twice: a failed refresh ahead of expiry, then after a rejection) and the
//! provider called at most twice; the refresher is only ever handed the current refresh token (no replay of a
//! rotated one) and never called for a link without one; and — the data-loss promise — after
//! every request the store still holds the link with its refresh token: the latest one the
//! refresher rotated in, or the original.
#![no_main]

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{
    BoxError,
    emit::{CONNECT_RELATION, EmitLayer, Emitter, pending_response},
    upstream::{
        UpstreamError,
        classify::{ClassifyUpstreamLayer, JsonErrorCode, Standard},
        grant::{GrantError, TokenResponse, refresher_fn},
        refresh::{RefreshAndRetryLayer, RetryBody},
        store::{Link, LinkKey, MemoryStore, TokenSecret},
    },
};
use tower_bearer_fuzz::*;

const CALLER: &str = "Bearer caller-tbCanary7f3a";
const PAYLOAD: &[u8] = b"payload-to-replay";
/// The link's tokens at the start; like the caller's, they carry the canary.
const AT0: &str = "at0-tbCanary7f3a";
const RT0: &str = "rt0-tbCanary7f3a";

#[derive(Clone, Debug)]
enum ProviderStep {
    Answer(Answer),
    Fail,
}

#[derive(Clone, Debug)]
enum RefreshStep {
    Ok(String, Option<String>),
    Grant,
    Client,
    Down,
    Parse,
    Timeout,
    Unreach,
    Rotated(String),
}

fn provider_step(line: &[u8]) -> Option<ProviderStep> {
    if line == b"E" {
        return Some(ProviderStep::Fail);
    }
    let line = line.strip_prefix(b"P")?;
    let mut parts = line.split(|&b| b == b'|');
    let status = std::str::from_utf8(parts.next()?)
        .ok()?
        .trim()
        .parse::<u16>()
        .ok()?;
    let status = StatusCode::from_u16(status).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(challenge) = parts.next().filter(|c| !c.is_empty()) {
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_bytes(challenge).ok()?,
        );
    }
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    for extra in parts {
        if let Some((name, value)) = header_line(extra) {
            headers.append(name, value);
        }
    }
    Some(ProviderStep::Answer(Answer {
        status,
        headers,
        body,
    }))
}

fn refresh_step(line: &[u8]) -> Option<RefreshStep> {
    let line = std::str::from_utf8(line.strip_prefix(b"R ")?).ok()?;
    let mut words = line.split(' ');
    Some(match words.next()? {
        "ok" => RefreshStep::Ok(
            words
                .next()
                .filter(|w| !w.is_empty())
                .unwrap_or("at-new")
                .to_owned(),
            words.next().filter(|w| !w.is_empty()).map(str::to_owned),
        ),
        "grant" => RefreshStep::Grant,
        "client" => RefreshStep::Client,
        "down" => RefreshStep::Down,
        "parse" => RefreshStep::Parse,
        "timeout" => RefreshStep::Timeout,
        "unreach" => RefreshStep::Unreach,
        "rotated" => RefreshStep::Rotated(words.next().filter(|w| !w.is_empty())?.to_owned()),
        _ => return None,
    })
}

#[derive(Default)]
struct World {
    provider: VecDeque<ProviderStep>,
    refresher: VecDeque<RefreshStep>,
    /// Access tokens the store or the refresher issued.
    issued: Vec<String>,
    /// The refresh token the store must hold: the original, or the latest rotated in.
    current_refresh: Option<String>,
    provider_calls: usize,
    refresher_calls: usize,
    /// Refresher answers that gave a new access token (`Ok`).
    refreshes: usize,
}

/// The invariants of the two findings (now fixed in the crate): on unless
/// `TOWER_BEARER_FUZZ_STRICT=0`.
fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("TOWER_BEARER_FUZZ_STRICT").is_none_or(|v| v != "0"))
}

/// The relation types of every well-formed `rel` param in a `Link` value (a token, or a
/// quoted-string followed by nothing but `;` or `,`). A `rel="…"junk` — which lenient clients
/// read as the quoted relation — counts too unless `TOWER_BEARER_FUZZ_STRICT=0`: see
/// fuzz/regressions/refresh_stack/README.md.
fn well_formed_rels(link: &str) -> impl Iterator<Item = &str> {
    link.split(';').flat_map(|param| {
        let value = param
            .split_once('=')
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("rel"))
            .map(|(_, value)| value.trim());
        let rels = value.and_then(|value| match value.strip_prefix('"') {
            Some(quoted) => {
                let (inner, after) = quoted.split_once('"')?;
                let after = after.trim();
                (strict() || after.is_empty() || after.starts_with(',')).then_some(inner)
            }
            None => Some(value.split(',').next().unwrap_or_default()),
        });
        rels.into_iter().flat_map(str::split_ascii_whitespace)
    })
}

fn ok() -> StatusCode {
    StatusCode::OK
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let world = Arc::new(Mutex::new(World::default()));
    {
        let mut w = world.lock().unwrap();
        while let Some(line) = input.line() {
            if let Some(step) = provider_step(line) {
                w.provider.push_back(step);
            } else if let Some(step) = refresh_step(line) {
                w.refresher.push_back(step);
            }
        }
        w.issued.push(AT0.to_owned());
        if flags & 0x01 != 0 {
            w.current_refresh = Some(RT0.to_owned());
        }
    }

    let store = MemoryStore::new();
    let key = LinkKey::new("alice", "acme");
    let mut link = Link::new(AT0);
    if flags & 0x01 != 0 {
        link = link.with_refresh_token(RT0);
    }
    link = match (flags >> 1) & 0x03 {
        0 => link,
        1 => link.with_expires_in(Duration::from_secs(3600)),
        2 => link.with_expires_in(Duration::from_secs(10)),
        _ => link.with_expires_at(SystemTime::now() - Duration::from_secs(60)),
    };
    store.insert(key.clone(), link);

    let refresher = {
        let world = world.clone();
        refresher_fn(move |refresh_token: TokenSecret| {
            let world = world.clone();
            async move {
                let mut w = world.lock().unwrap();
                w.refresher_calls += 1;
                assert_eq!(
                    w.current_refresh.as_deref(),
                    Some(refresh_token.expose_secret()),
                    "the refresher was handed a refresh token that is not the current one"
                );
                let step = w.refresher.pop_front();
                let status = StatusCode::SERVICE_UNAVAILABLE;
                match step {
                    Some(RefreshStep::Ok(access, refresh)) => {
                        w.refreshes += 1;
                        w.issued.push(access.clone());
                        let mut answer =
                            TokenResponse::new(access).with_expires_in(Duration::from_secs(3600));
                        if let Some(refresh) = refresh {
                            w.current_refresh = Some(refresh.clone());
                            answer = answer.with_refresh_token(refresh);
                        }
                        Ok(answer)
                    }
                    Some(RefreshStep::Grant) => Err(GrantError::InvalidGrant {
                        status: StatusCode::BAD_REQUEST,
                    }),
                    Some(RefreshStep::Client) => Err(GrantError::Misconfigured {
                        status: StatusCode::UNAUTHORIZED,
                        error: "invalid_client".to_owned(),
                    }),
                    Some(RefreshStep::Parse) => Err(GrantError::Unparseable { status: ok() }),
                    Some(RefreshStep::Timeout) => {
                        Err(GrantError::TimedOut(Duration::from_secs(20)))
                    }
                    Some(RefreshStep::Unreach) => Err(GrantError::Unreachable(Arc::from(
                        BoxError::from("connection refused"),
                    ))),
                    Some(RefreshStep::Rotated(refresh)) => {
                        w.current_refresh = Some(refresh.clone());
                        Err(GrantError::RefreshTokenRotated {
                            error: Box::new(GrantError::Unparseable { status: ok() }),
                            refresh_token: TokenSecret::new(refresh),
                        })
                    }
                    Some(RefreshStep::Down) | None => Err(GrantError::Unavailable {
                        status,
                        retry_after: None,
                    }),
                }
            }
        })
    };

    let provider = {
        let world = world.clone();
        service_fn(move |request: Request<RetryBody<Full<Bytes>>>| {
            let world = world.clone();
            async move {
                let authorization = request.headers().get(header::AUTHORIZATION).cloned();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("the request body")
                    .to_bytes();
                assert_eq!(&body[..], PAYLOAD, "the provider got another body");
                let mut w = world.lock().unwrap();
                w.provider_calls += 1;
                let authorization = authorization.expect("the provider got no Authorization");
                assert_ne!(
                    authorization, CALLER,
                    "the caller's own token reached the provider"
                );
                assert!(
                    authorization.is_sensitive(),
                    "the upstream Authorization is not marked sensitive"
                );
                let token = authorization
                    .as_bytes()
                    .strip_prefix(b"Bearer ")
                    .expect("a Bearer authorization");
                assert!(
                    w.issued.iter().any(|t| t.as_bytes() == token),
                    "the provider got a token nobody issued"
                );
                match w.provider.pop_front() {
                    Some(ProviderStep::Answer(answer)) => Ok(answer.response()),
                    Some(ProviderStep::Fail) => Err(BoxError::from("connection refused")),
                    None => Ok(Response::new(Full::new(Bytes::from_static(b"ok")))),
                }
            }
        })
    };

    let mut refresh = RefreshAndRetryLayer::new("acme", store.clone(), refresher);
    if flags & 0x20 != 0 {
        refresh = refresh.connect_url("https://gw.example/connect/acme");
    }
    let client = ServiceBuilder::new()
        .layer(refresh)
        .layer(ClassifyUpstreamLayer::with_classifier(
            Standard::new().rule(JsonErrorCode::power_bi()),
        ))
        .service(provider);

    let outcomes: Arc<Mutex<Vec<Result<StatusCode, String>>>> = Arc::default();
    let handler = {
        let outcomes = outcomes.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            let client = client.clone();
            let outcomes = outcomes.clone();
            async move {
                let result: Result<_, UpstreamError> = client.oneshot(request).await;
                let response = match result {
                    Ok(response) => {
                        outcomes.lock().unwrap().push(Ok(response.status()));
                        let (parts, body) = response.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        Response::from_parts(parts, Full::new(body))
                    }
                    Err(error) => {
                        let shown = format!("{error:?} {error}");
                        outcomes.lock().unwrap().push(Err(shown));
                        pending_response(error)
                    }
                };
                Ok::<_, Infallible>(response)
            }
        })
    };
    let emitter = Emitter::new("gw").with_proxy_name("gw");
    let service = EmitLayer::new(emitter).layer(handler);

    let requests = usize::from((flags >> 3) & 0x03) % 3 + 1;
    for _ in 0..requests {
        let (calls_before, attempts_before, refreshes_before) = {
            let w = world.lock().unwrap();
            (w.provider_calls, w.refresher_calls, w.refreshes)
        };
        let mut request = Request::new(Full::new(Bytes::from_static(PAYLOAD)));
        *request.uri_mut() = "https://api.acme.example/files?x=1".parse().unwrap();
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, HeaderValue::from_static(CALLER));
        if flags & 0x40 != 0 {
            request.headers_mut().insert(
                header::ACCEPT,
                HeaderValue::from_static("application/problem+json"),
            );
        }
        request.extensions_mut().insert(key.clone());
        let response = block_on(async {
            let response = service.clone().oneshot(request).await.expect("infallible");
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, body)
        });
        let outcome = outcomes.lock().unwrap().pop().expect("the handler ran");
        let w = world.lock().unwrap();

        // Bounded work per request.
        assert!(
            w.provider_calls - calls_before <= 2,
            "the provider was called more than twice"
        );
        // One refresh per request; a second attempt only after one that gave no new access
        // token (a refresh ahead of expiry that failed, perhaps rotating the refresh token,
        // then a rejection of the old access token).
        assert!(
            w.refreshes - refreshes_before <= 1,
            "refreshed more than once"
        );
        assert!(
            w.refresher_calls - attempts_before <= 2,
            "the token endpoint was asked 3 times"
        );

        // Nothing secret in the answer.
        let shown = [
            header_bytes(response.headers()),
            response.body().to_vec(),
            format!("{response:?}").into_bytes(),
        ]
        .concat();
        // (A provider may say anything, and its answers are passed on: only when the script
        // does not mention the canary is its appearance a leak of the caller's token.)
        if !contains(data, CANARY.as_bytes()) {
            assert_absent("the answer", &shown, CANARY);
        }
        if let (Err(debug), false) = (&outcome, contains(data, CANARY.as_bytes())) {
            assert_absent("an UpstreamError's Debug", debug.as_bytes(), CANARY);
            // Scripted tokens are checked when they carry the canary (a shorter one may well be
            // a word of the rendering itself), and only when the provider's script does not
            // (its challenges' scopes, say, are shown on purpose).
            for secret in w.issued.iter().chain(w.current_refresh.iter()) {
                if secret.contains(CANARY) {
                    assert_absent("an UpstreamError's Debug", debug.as_bytes(), secret);
                    assert_absent("the answer", &shown, secret);
                }
            }
        }

        let status = response.status();
        let proxy_status: Vec<&[u8]> = response
            .headers()
            .get_all("proxy-status")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let ours = |v: &&[u8]| v.starts_with(b"gw;") || *v == b"gw";
        match &outcome {
            Err(_) => {
                assert!(
                    [303, 400, 403, 500, 502, 503, 504].contains(&status.as_u16()),
                    "an UpstreamError rendered as {status}"
                );
                assert!(
                    proxy_status.iter().any(ours) || status == StatusCode::BAD_REQUEST,
                    "no Proxy-Status of ours on {status}"
                );
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(
                        response.headers().contains_key(header::RETRY_AFTER),
                        "503 without Retry-After"
                    );
                }
                for challenge in response.headers().get_all(header::WWW_AUTHENTICATE) {
                    assert!(
                        !contains(challenge.as_bytes(), b"error="),
                        "an upstream failure blames the caller's token: {challenge:?}"
                    );
                }
            }
            Ok(passed) => {
                assert_eq!(status, *passed, "a passed-on status was changed");
                assert!(
                    !response.headers().contains_key(header::WWW_AUTHENTICATE),
                    "the provider's WWW-Authenticate was passed on"
                );
                for value in &proxy_status {
                    if ours(value) {
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "a forged Proxy-Status of ours was passed on: {value:?}"
                        );
                    }
                }
                for link in response.headers().get_all(header::LINK) {
                    let link = String::from_utf8_lossy(link.as_bytes());
                    assert!(
                        !well_formed_rels(&link)
                            .any(|rel| rel.eq_ignore_ascii_case(CONNECT_RELATION)),
                        "a forged Link with our connect relation was passed on: {link:?}"
                    );
                }
            }
        }

        // The data-loss promise.
        let stored = store.get(&key).expect("the link is still stored");
        if let Some(expected) = &w.current_refresh {
            assert_eq!(
                stored.refresh_token().map(TokenSecret::expose_secret),
                Some(expected.as_str()),
                "the stored refresh token was lost or replaced: outcome {outcome:?}"
            );
        } else {
            assert_eq!(
                w.refresher_calls, 0,
                "the refresher ran for a link without a refresh token"
            );
        }
        assert!(
            w.issued
                .iter()
                .any(|t| t == stored.access_token().expose_secret())
        );
    }
});
