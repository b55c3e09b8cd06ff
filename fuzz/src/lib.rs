//! What the fuzz targets share: one tokio runtime, the test keys, canary secrets, and small
//! readers for the targets' line-based input formats (so the seed corpora stay readable).

use std::{
    future::Future,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub const HMAC_SECRET: &[u8] = b"an-hmac-secret-of-at-least-32-bytes-for-hs256";
pub const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/rsa_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec_public.pem");

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "https://api.example";

/// A token-shaped string no response, header or `Debug` output may ever contain.
pub const CANARY: &str = "tbCanary7f3a";

/// The one current-thread runtime of this process (built once; time enabled, no I/O).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Runs `future` to completion on [`rt`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    rt().block_on(future)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `haystack` contains `needle` (bytes).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every header name and value of `headers`, as one byte string.
pub fn header_bytes(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Panics if `secret` shows up in `what`.
pub fn assert_absent(what: &str, haystack: &[u8], secret: &str) {
    assert!(
        !contains(haystack, secret.as_bytes()),
        "a secret ({} bytes) appears in {what}",
        secret.len()
    );
}

/// A cursor over the bytes of an input: flags first, then `\n`-separated lines.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next byte, or 0 at the end.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next line (without its `\n`), or `None` at the end.
    pub fn line(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &self.rest[self.rest.len()..]),
        };
        self.rest = rest;
        Some(line)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Parses `name: value` (or `name:value`); `None` if either part is not valid in HTTP.
pub fn header_line(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()).ok()?;
    Some((name, value))
}

/// A scripted HTTP answer: `STATUS` line, header lines, an empty line, then the body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Reads `STATUS\nname: value\n...\n\nbody` (the status defaults to 200).
    pub fn parse(data: &[u8]) -> Self {
        let mut input = Input::new(data);
        let status = input
            .line()
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.trim().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let mut headers = HeaderMap::new();
        while let Some(line) = input.line() {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = header_line(line) {
                headers.append(name, value);
            }
        }
        Self {
            status,
            headers,
            body: Bytes::copy_from_slice(input.rest()),
        }
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound: tokens, the HS256 validator, and the checks every inbound response must pass.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower_bearer::{
    emit::{BodyMode, Disclosure, Emitter},
    failure::AuthError,
    validate::{ClaimsPolicy, JwtValidator, StandardClaims, VerificationKey},
};

/// 2100-01-01: tokens minted here stay valid, so a crash input reproduces for decades.
pub const FAR_FUTURE: u64 = 4_102_444_800;

/// The policy of every validator here: issuer, audience, `exp` required.
pub fn policy() -> ClaimsPolicy {
    ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE)
}

/// A validator for HS256 tokens signed with [`HMAC_SECRET`].
pub fn hs_validator() -> JwtValidator<StandardClaims> {
    JwtValidator::builder()
        .key(VerificationKey::hmac(HMAC_SECRET, &[Algorithm::HS256]).expect("hmac key"))
        .policy(policy())
        .build()
        .expect("hs validator")
}

/// `claims` signed with HS256 and [`HMAC_SECRET`].
pub fn hs_token(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HMAC_SECRET),
    )
    .expect("encode")
}

/// A token [`hs_validator`] accepts.
pub fn valid_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        hs_token(&serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "read",
            "iat": 1_700_000_000u64, "exp": FAR_FUTURE,
        }))
    })
}

/// A well-signed token that expired long ago.
pub fn expired_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        hs_token(&serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
            "iat": 1_600_000_000u64, "exp": 1_600_000_600u64,
        }))
    })
}

/// Replaces the placeholders `@valid`, `@expired` and `@canary` in fuzzed bytes, so that the
/// fuzzer (and the seeds) can reach the paths a real token opens.
pub fn expand(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        let (placeholder, with): (&[u8], &str) = if rest.starts_with(b"@valid") {
            (b"@valid", valid_token())
        } else if rest.starts_with(b"@expired") {
            (b"@expired", expired_token())
        } else if rest.starts_with(b"@canary") {
            (b"@canary", CANARY)
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
            continue;
        };
        out.extend_from_slice(with.as_bytes());
        rest = &rest[placeholder.len()..];
    }
    out
}

/// An emitter configured from a flags byte: realm `api`, disclosure, body mode, gRPC.
pub fn emitter(flags: u8) -> Emitter {
    let mut emitter = Emitter::new("api").with_grpc(flags & 0x10 != 0);
    if flags & 0x02 != 0 {
        emitter = emitter.with_disclosure(Disclosure::Verbose);
    }
    if flags & 0x04 != 0 {
        emitter = emitter.with_body_mode(BodyMode::HeadersOnly);
    }
    if flags & 0x08 != 0 {
        emitter = emitter
            .with_resource_metadata("https://api.example/.well-known/oauth-protected-resource");
    }
    emitter
}

/// What every answer of `ValidateBearer` must look like. `expected`, when known, is what the
/// extractor and the validator say when called directly.
pub fn check_inbound(
    response: &Response<Bytes>,
    expected: Option<&Result<StandardClaims, AuthError>>,
    debug: &str,
) {
    let status = response.status().as_u16();
    let headers = response.headers();
    let challenge = headers
        .get(http::header::WWW_AUTHENTICATE)
        .map(|v| v.as_bytes().to_vec());
    let bearer = |c: &Option<Vec<u8>>| {
        c.as_ref()
            .is_some_and(|c| c.starts_with(b"Bearer realm=\"api\""))
    };

    if let Some(grpc_status) = headers.get("grpc-status") {
        // A trailers-only gRPC answer (the request said `application/grpc`).
        assert_eq!(status, 200, "gRPC failure with HTTP status {status}");
        let code = grpc_status.to_str().expect("grpc-status is ASCII");
        assert!(
            ["3", "5", "7", "13", "14", "16"].contains(&code),
            "unexpected grpc-status {code}"
        );
        if code == "3" || code == "16" {
            assert!(bearer(&challenge), "gRPC {code} without a Bearer challenge");
        }
        if let Some(Err(error)) = expected {
            let want = match error {
                AuthError::MissingCredentials | AuthError::InvalidToken(_) => "16",
                AuthError::InvalidRequest(_) => "3",
                _ => code,
            };
            assert_eq!(code, want, "gRPC code for {error:?}");
        }
    } else {
        assert!(
            [200, 400, 401, 403, 404, 503].contains(&status),
            "status {status} is not in the inbound contract"
        );
        if status == 400 || status == 401 {
            assert!(
                bearer(&challenge),
                "{status} without `Bearer realm=\"api\"`: {challenge:?}"
            );
        }
        if status == 200 || status == 404 || status == 503 {
            assert!(challenge.is_none(), "{status} with a challenge");
        }
        match expected {
            Some(Ok(_)) => assert_eq!(status, 200, "a valid token was refused"),
            Some(Err(AuthError::MissingCredentials)) => {
                assert_eq!(status, 401);
                let c = challenge.clone().unwrap_or_default();
                assert!(
                    !contains(&c, b"error="),
                    "I1 challenge carries an error: {c:?}"
                );
            }
            Some(Err(AuthError::InvalidRequest(_))) => {
                assert_eq!(status, 400);
                let c = challenge.clone().unwrap_or_default();
                assert!(contains(&c, b"error=\"invalid_request\""), "I2: {c:?}");
            }
            Some(Err(AuthError::InvalidToken(_))) => {
                assert_eq!(status, 401);
                let c = challenge.clone().unwrap_or_default();
                assert!(contains(&c, b"error=\"invalid_token\""), "I3/I4: {c:?}");
            }
            _ => {}
        }
    }
    // The canary never leaks: not in headers, not in the body, not in Debug output.
    assert_absent("the response headers", &header_bytes(headers), CANARY);
    assert_absent("the response body", response.body(), CANARY);
    assert_absent("Debug output", debug.as_bytes(), CANARY);
    assert_absent(
        "the response headers",
        &header_bytes(headers),
        valid_token(),
    );
    assert_absent("the response body", response.body(), valid_token());
}

// ---------------------------------------------------------------------------------------------
// Key sources: tokens signed with the asymmetric test keys, and scripted HTTP answers.

/// Splits `data` at the first `\n====\n` line.
pub fn split_answers(data: &[u8]) -> (&[u8], &[u8]) {
    const SEP: &[u8] = b"\n====\n";
    match data.windows(SEP.len()).position(|w| w == SEP) {
        Some(i) => (&data[..i], &data[i + SEP.len()..]),
        None => (data, &[]),
    }
}

/// The tokens `jwks_discovery` and `introspection` present, by kind (see [`token_kind`]).
pub fn token_kind(kind: u8) -> &'static str {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| {
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "read",
            "iat": 1_700_000_000u64, "exp": FAR_FUTURE,
        });
        let expired = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
            "iat": 1_600_000_000u64, "exp": 1_600_000_600u64,
        });
        let rs = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key");
        let es = EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec key");
        let with_kid = |alg, kid: Option<&str>| {
            let mut h = Header::new(alg);
            h.kid = kid.map(str::to_owned);
            h
        };
        let sign = |h: &Header, c: &serde_json::Value, k: &EncodingKey| {
            jsonwebtoken::encode(h, c, k).expect("encode")
        };
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        vec![
            sign(&with_kid(Algorithm::RS256, Some("rs")), &claims, &rs),
            sign(&with_kid(Algorithm::ES256, Some("es")), &claims, &es),
            sign(&with_kid(Algorithm::RS256, None), &claims, &rs),
            sign(
                &with_kid(Algorithm::HS256, Some("hs")),
                &claims,
                &EncodingKey::from_secret(HMAC_SECRET),
            ),
            sign(
                &with_kid(Algorithm::HS256, Some("rs")),
                &claims,
                &EncodingKey::from_secret(RSA_PUBLIC),
            ),
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","kid":"rs"}"#),
                b64(claims.to_string().as_bytes())
            ),
            sign(&with_kid(Algorithm::RS256, Some("rs")), &expired, &rs),
            sign(&with_kid(Algorithm::RS256, Some("other")), &claims, &rs),
        ]
    });
    &tokens[usize::from(kind & 0x07)]
}

/// Whether a token of this kind may ever be accepted: signed by a real asymmetric test key and
/// not expired. HMAC (even with a JWKS `oct` key), family confusion and `none` never are.
pub fn acceptable_kind(kind: u8) -> bool {
    matches!(kind & 0x07, 0 | 1 | 2 | 7)
}
