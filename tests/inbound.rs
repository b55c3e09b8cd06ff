//! The inbound wire contract (DESIGN.md §2, rows I1–I7 and I9, plus the gRPC mapping), proven over
//! real HTTP: an axum application behind `ValidateBearerLayer` on a loopback socket, requests sent
//! with hyper-util's client, exact statuses and exact `WWW-Authenticate` values asserted in both
//! disclosure levels, with and without `resource_metadata`, in both body modes, for GET, HEAD,
//! `Accept: text/html` and gRPC requests.

mod support;

use std::time::Duration;

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower_bearer::{
    emit::{BodyMode, DEFAULT_PROBLEM_BASE, Disclosure, Emitter},
    token::BearerExtractor,
    validate::ValidateBearerLayer,
};

use support::{http::*, keys::*, routes::*, tokens::*};

const REALM: &str = "api.example";
const METADATA_URL: &str = "https://api.example/.well-known/oauth-protected-resource";

// The verbose descriptions: the `Display` of each `AuthError`.
const MALFORMED: &str = "invalid token: the access token is malformed";
const TOO_LONG: &str = "invalid token: the access token is too long";
const EXPIRED: &str = "invalid token: the access token expired";
const NOT_YET_VALID: &str = "invalid token: the access token is not yet valid";
const BAD_SIGNATURE: &str = "invalid token: the access token signature is invalid";
const ALG_NOT_ALLOWED: &str = "invalid token: the access token algorithm is not allowed";
const UNKNOWN_KEY: &str = "invalid token: the access token was signed by an unknown key";
const WRONG_ISSUER: &str = "invalid token: the access token issuer is not accepted";
const WRONG_AUDIENCE: &str = "invalid token: the access token audience is not accepted";
const WRONG_TYPE: &str = "invalid token: the access token type is not accepted";
const MISSING_CLAIM: &str = "invalid token: the access token lacks a required claim";
const MULTIPLE_METHODS: &str = "invalid request: the access token was sent by more than one method";
const REPEATED_HEADER: &str = "invalid request: the Authorization header was repeated";
const REPEATED_PARAM: &str = "invalid request: the access_token parameter was repeated";
const EMPTY_TOKEN: &str = "invalid request: the bearer token is empty";

/// One emitter configuration.
#[derive(Debug, Clone, Copy)]
struct Cfg {
    verbose: bool,
    metadata: bool,
    headers_only: bool,
}

impl Cfg {
    fn all() -> Vec<Cfg> {
        let mut all = Vec::new();
        for headers_only in [false, true] {
            for verbose in [false, true] {
                for metadata in [false, true] {
                    all.push(Cfg {
                        verbose,
                        metadata,
                        headers_only,
                    });
                }
            }
        }
        all
    }

    fn emitter(self) -> Emitter {
        // The test service answers gRPC callers too (`Variant::Grpc`).
        let mut emitter = Emitter::new(REALM)
            .with_grpc(true)
            .with_disclosure(if self.verbose {
                Disclosure::Verbose
            } else {
                Disclosure::Minimal
            });
        if self.metadata {
            emitter = emitter.with_resource_metadata(METADATA_URL);
        }
        if self.headers_only {
            emitter = emitter.with_body_mode(BodyMode::HeadersOnly);
        }
        emitter
    }
}

/// What a request must get.
#[derive(Debug, Clone)]
enum Want {
    /// 200 from the handler, with this body.
    Ok(&'static str),
    /// I1.
    Missing,
    /// I2, with the verbose description.
    InvalidRequest(&'static str),
    /// I3 / I4, with the verbose description.
    InvalidToken(&'static str),
    /// I5, with the required scopes.
    Scope(&'static str),
    /// I6: `acr_values` and `max_age`.
    StepUp(Option<&'static str>, Option<u64>),
    /// I7.
    Hidden,
}

impl Want {
    fn status(&self) -> u16 {
        match self {
            Want::Ok(_) => 200,
            Want::Missing | Want::InvalidToken(_) | Want::StepUp(..) => 401,
            Want::InvalidRequest(_) => 400,
            Want::Scope(_) => 403,
            Want::Hidden => 404,
        }
    }

    fn grpc_status(&self) -> &'static str {
        match self.status() {
            400 => "3",
            401 => "16",
            403 => "7",
            404 => "5",
            other => panic!("no gRPC mapping expected for {other}"),
        }
    }

    /// The verbose description (`error_description`, problem `detail`, verbose `grpc-message`).
    fn description(&self) -> &'static str {
        match self {
            Want::Ok(_) => unreachable!(),
            Want::Missing => "the request carries no bearer credentials",
            Want::InvalidRequest(d) | Want::InvalidToken(d) => d,
            Want::Scope(_) => "the token lacks a required scope",
            Want::StepUp(..) => "a stronger or more recent authentication is required",
            Want::Hidden => "not found",
        }
    }

    /// Problem `type` slug and `title`.
    fn problem_kind(&self) -> (Option<&'static str>, &'static str) {
        match self {
            Want::Ok(_) => unreachable!(),
            Want::Missing => (Some("missing-credentials"), "Authentication required"),
            Want::InvalidRequest(_) => (Some("invalid-request"), "Invalid authentication request"),
            Want::InvalidToken(_) => (Some("invalid-token"), "Invalid access token"),
            Want::Scope(_) => (Some("insufficient-scope"), "Insufficient scope"),
            Want::StepUp(..) => (
                Some("insufficient-user-authentication"),
                "Stronger authentication required",
            ),
            Want::Hidden => (None, "Not Found"),
        }
    }

    /// The exact `WWW-Authenticate` value, or `None` when there must be none.
    fn challenge(&self, cfg: Cfg) -> Option<String> {
        let (code, params): (&str, Vec<(&str, String)>) = match self {
            Want::Ok(_) | Want::Hidden => return None,
            Want::Missing => ("", Vec::new()),
            Want::InvalidRequest(_) => ("invalid_request", Vec::new()),
            Want::InvalidToken(_) => ("invalid_token", Vec::new()),
            Want::Scope(scope) => ("insufficient_scope", vec![("scope", scope.to_string())]),
            Want::StepUp(acr, max_age) => {
                let mut params = Vec::new();
                if let Some(acr) = acr {
                    params.push(("acr_values", acr.to_string()));
                }
                if let Some(max_age) = max_age {
                    params.push(("max_age", max_age.to_string()));
                }
                ("insufficient_user_authentication", params)
            }
        };
        let mut value = format!(r#"Bearer realm="{REALM}""#);
        if !code.is_empty() {
            value += &format!(r#", error="{code}""#);
            if cfg.verbose {
                value += &format!(r#", error_description="{}""#, self.description());
            }
        }
        for (name, param) in params {
            value += &format!(r#", {name}="{param}""#);
        }
        if cfg.metadata {
            value += &format!(r#", resource_metadata="{METADATA_URL}""#);
        }
        Some(value)
    }

    /// The exact problem document.
    fn problem(&self, cfg: Cfg) -> Value {
        let (slug, title) = self.problem_kind();
        let problem_type = match slug {
            Some(slug) => format!("{DEFAULT_PROBLEM_BASE}{slug}"),
            None => "about:blank".to_owned(),
        };
        let mut problem = json!({ "type": problem_type, "title": title, "status": self.status() });
        if cfg.verbose {
            problem["detail"] = self.description().into();
        }
        if let Want::Scope(scope) = self {
            problem["scope"] = (*scope).into();
        }
        problem
    }

    fn grpc_message(&self, cfg: Cfg) -> &'static str {
        if cfg.verbose {
            self.description()
        } else {
            self.problem_kind().1
        }
    }
}

/// How a case is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// As built (a GET without `Accept`).
    Plain,
    /// As HEAD.
    Head,
    /// With `Accept: text/html`.
    Html,
    /// As a gRPC call: POST with `content-type: application/grpc`.
    Grpc,
}

fn variant_of(req: &Req, variant: Variant) -> Req {
    match variant {
        Variant::Plain => req.clone(),
        Variant::Head => req.clone().method(Method::HEAD),
        Variant::Html => req.clone().header("accept", "text/html"),
        Variant::Grpc => req
            .clone()
            .method(Method::POST)
            .header("content-type", "application/grpc")
            .header("te", "trailers"),
    }
}

/// Asserts everything the contract says about `reply`.
fn check(name: &str, cfg: Cfg, variant: Variant, want: &Want, reply: &Reply) {
    let ctx = format!("case `{name}`, {cfg:?}, {variant:?}: {reply:?}");
    let www = reply.header("www-authenticate");

    if let Want::Ok(body) = want {
        assert_eq!(reply.status, 200, "{ctx}");
        assert_eq!(www, None, "{ctx}");
        assert_eq!(reply.header("grpc-status"), None, "{ctx}");
        if variant == Variant::Head {
            assert!(reply.body.is_empty(), "{ctx}");
        } else {
            assert_eq!(reply.text(), *body, "{ctx}");
        }
        return;
    }

    assert_eq!(www.map(str::to_owned), want.challenge(cfg), "{ctx}");
    // Failures are never cached; a hidden resource's 404 looks like the application's own.
    let no_store = (!matches!(want, Want::Hidden)).then_some("no-store");
    assert_eq!(reply.header("cache-control"), no_store, "{ctx}");
    assert_eq!(reply.header("proxy-status"), None, "{ctx}");
    assert_eq!(reply.header("retry-after"), None, "{ctx}");

    if variant == Variant::Grpc {
        assert_eq!(reply.status, 200, "{ctx}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/grpc"),
            "{ctx}"
        );
        assert_eq!(
            reply.header("grpc-status"),
            Some(want.grpc_status()),
            "{ctx}"
        );
        let message = reply.header("grpc-message").expect("grpc-message");
        assert_grpc_percent_encoded(message, &ctx);
        assert_eq!(percent_decode(message), want.grpc_message(cfg), "{ctx}");
        assert!(reply.body.is_empty(), "{ctx}");
        return;
    }

    assert_eq!(reply.status.as_u16(), want.status(), "{ctx}");
    assert_eq!(reply.header("grpc-status"), None, "{ctx}");
    // A hidden resource never has a body: it must look like the application's own 404.
    let body_expected = matches!(variant, Variant::Plain | Variant::Head)
        && !cfg.headers_only
        && !matches!(want, Want::Hidden);
    if body_expected && variant == Variant::Head {
        // The GET's headers, `Content-Length` included (RFC 9110 §9.3.2, §8.6), no content.
        assert!(reply.body.is_empty(), "{ctx}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{ctx}"
        );
        let get_length = serde_json::to_vec(&want.problem(cfg)).unwrap().len();
        assert_eq!(
            reply.header("content-length"),
            Some(get_length.to_string().as_str()),
            "{ctx}"
        );
    } else if body_expected {
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{ctx}"
        );
        let problem: Value = serde_json::from_slice(&reply.body).expect("problem+json body");
        assert_eq!(problem, want.problem(cfg), "{ctx}");
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str()),
            "{ctx}"
        );
    } else {
        assert!(reply.body.is_empty(), "{ctx}");
        assert_eq!(reply.header("content-type"), None, "{ctx}");
        if variant != Variant::Head {
            assert_eq!(reply.header("content-length"), Some("0"), "{ctx}");
        }
    }
}

/// gRPC `Percent-Byte-Unencoded`: `%x20-%x24 / %x26-%x7E`; anything else as `%XX`.
fn assert_grpc_percent_encoded(message: &str, ctx: &str) {
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                assert!(
                    bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit),
                    "bad percent-escape in grpc-message {message:?}: {ctx}"
                );
                i += 3;
            }
            0x20..=0x7e => i += 1,
            other => panic!("unencoded byte {other:#x} in grpc-message {message:?}: {ctx}"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// Sends every case in every variant to a server with this configuration.
async fn run_matrix(cfg: Cfg, cases: &[(&'static str, Req, Want)]) {
    let base = serve(app(cfg.emitter())).await;
    let client = client();
    for (name, req, want) in cases {
        for variant in [Variant::Plain, Variant::Head, Variant::Html, Variant::Grpc] {
            let reply = variant_of(req, variant).send(&client, &base).await;
            check(name, cfg, variant, want, &reply);
        }
    }
    assert_still_serving(&client, &base).await;
}

/// The server survived: a valid token still gets through.
async fn assert_still_serving(client: &TestClient, base: &str) {
    let reply = Req::get("/me")
        .bearer(&token(Key::Rs, &valid_claims()))
        .send(client, base)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text(), "alice");
}

/// Every case of the matrix: (name, request, expectation).
fn cases() -> Vec<(&'static str, Req, Want)> {
    let valid = |key| token(key, &valid_claims());
    let hs = valid(Key::Hs);
    let rs = valid(Key::Rs);
    let with = |changes: Value| token(Key::Rs, &claims_with(changes));
    let now = now();
    let get = |path: &str| Req::get(path);

    // Tokens broken in specific ways.
    let header_json = |alg: &str, kid: &str| {
        format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt"}}"#).into_bytes()
    };
    let payload_json = serde_json::to_vec(&valid_claims()).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64(&payload_json)
    );
    let alg_none_kid = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"hs","typ":"at+jwt"}"#),
        b64(&payload_json)
    );
    // Algorithm confusion: HS256 with the RSA public key PEM as the HMAC secret.
    let confused = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = kid.map(str::to_owned);
        token_with_header(
            &header,
            &valid_claims(),
            &EncodingKey::from_secret(RSA_PUBLIC),
        )
    };
    // An RS256 token presented under the HMAC key's `kid`.
    let rs_as_hs = {
        let mut header = Key::Rs.header();
        header.kid = Some("hs".into());
        token_with_header(&header, &valid_claims(), &Key::Rs.encoding_key())
    };
    let tampered = {
        let parts: Vec<&str> = rs.split('.').collect();
        let forged = serde_json::to_vec(&claims_with(
            json!({ "sub": "mallory", "scope": "read admin" }),
        ))
        .unwrap();
        format!("{}.{}.{}", parts[0], b64(&forged), parts[2])
    };
    let stripped = format!("{}.", rs.rsplit_once('.').unwrap().0);
    let two_parts = rs.rsplit_once('.').unwrap().0.to_owned();
    let foreign_kid = token(Key::Foreign, &valid_claims());
    let foreign_as_rs = {
        let mut header = Key::Foreign.header();
        header.kid = Some("rs".into());
        token_with_header(&header, &valid_claims(), &Key::Foreign.encoding_key())
    };
    let foreign_no_kid = {
        let mut header = Key::Foreign.header();
        header.kid = None;
        token_with_header(&header, &valid_claims(), &Key::Foreign.encoding_key())
    };
    let typ = |typ: Option<&str>| {
        let mut header = Key::Rs.header();
        header.typ = typ.map(str::to_owned);
        token_with_header(&header, &valid_claims(), &Key::Rs.encoding_key())
    };
    let no_kid_hs = {
        let mut header = Key::Hs.header();
        header.kid = None;
        token_with_header(&header, &valid_claims(), &Key::Hs.encoding_key())
    };
    let header_not_json = raw_token(b"not json", &payload_json, Key::Hs);
    let payload_not_json = raw_token(&header_json("HS256", "hs"), b"not json", Key::Hs);
    let payload_bad_base64 = {
        let message = format!("{}.a", b64(&header_json("HS256", "hs")));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &Key::Hs.encoding_key(),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    let huge_jwt = with(json!({ "padding": "x".repeat(9 * 1024) }));

    vec![
        // ── accepted: every key family, scheme spelling, leeway ─────────────────────────
        ("HS256 accepted", get("/me").bearer(&hs), Want::Ok("alice")),
        ("RS256 accepted", get("/me").bearer(&rs), Want::Ok("alice")),
        (
            "ES256 accepted",
            get("/me").bearer(&valid(Key::Es)),
            Want::Ok("alice"),
        ),
        (
            "EdDSA accepted",
            get("/me").bearer(&valid(Key::Ed)),
            Want::Ok("alice"),
        ),
        (
            "HS256 without kid accepted",
            get("/me").bearer(&no_kid_hs),
            Want::Ok("alice"),
        ),
        (
            "scope granted",
            get("/read").bearer(&rs),
            Want::Ok("read ok"),
        ),
        (
            "scope granted via scp array",
            get("/read").bearer(&with(json!({ "scope": null, "scp": ["read"] }))),
            Want::Ok("read ok"),
        ),
        (
            "lowercase bearer",
            get("/read").header("authorization", format!("bearer {rs}")),
            Want::Ok("read ok"),
        ),
        (
            "uppercase BEARER",
            get("/read").header("authorization", format!("BEARER {es}", es = valid(Key::Es))),
            Want::Ok("read ok"),
        ),
        (
            "two spaces after scheme",
            get("/read").header("authorization", format!("Bearer  {rs}")),
            Want::Ok("read ok"),
        ),
        (
            "typ application/at+jwt",
            get("/read").bearer(&typ(Some("application/at+jwt"))),
            Want::Ok("read ok"),
        ),
        (
            "aud array containing ours",
            get("/read").bearer(&with(json!({ "aud": ["other", AUDIENCE] }))),
            Want::Ok("read ok"),
        ),
        (
            "expired within leeway",
            get("/read").bearer(&with(json!({ "exp": now - 10 }))),
            Want::Ok("read ok"),
        ),
        (
            "nbf within leeway",
            get("/read").bearer(&with(json!({ "nbf": now + 10 }))),
            Want::Ok("read ok"),
        ),
        (
            "step-up satisfied",
            get("/step-up").bearer(&rs),
            Want::Ok("step-up ok"),
        ),
        (
            "hidden route, allowed",
            get("/admin").bearer(&with(json!({ "scope": "read admin" }))),
            Want::Ok("admin ok"),
        ),
        // ── I1: no credentials ─────────────────────────────────────────────────────────
        ("no credentials", get("/read"), Want::Missing),
        ("no credentials, echo route", get("/me"), Want::Missing),
        ("no credentials, hidden route", get("/admin"), Want::Missing),
        (
            "no credentials, unknown path",
            get("/nowhere"),
            Want::Missing,
        ),
        (
            "Basic only",
            get("/read").header("authorization", "Basic YWxpY2U6c2VjcmV0"),
            Want::Missing,
        ),
        (
            "DPoP only",
            get("/read").header("authorization", format!("DPoP {rs}")),
            Want::Missing,
        ),
        (
            "scheme Bearerx",
            get("/read").header("authorization", format!("Bearerx {rs}")),
            Want::Missing,
        ),
        (
            "query token while the query method is off",
            get(&format!("/read?access_token={rs}")),
            Want::Missing,
        ),
        // ── I2: ambiguous or empty ─────────────────────────────────────────────────────
        (
            "empty token `Bearer`",
            get("/read").header("authorization", "Bearer"),
            Want::InvalidRequest(EMPTY_TOKEN),
        ),
        (
            "empty token `Bearer   `",
            get("/read").header("authorization", "Bearer   "),
            Want::InvalidRequest(EMPTY_TOKEN),
        ),
        (
            "two Authorization headers",
            get("/read").bearer(&rs).bearer(&hs),
            Want::InvalidRequest(REPEATED_HEADER),
        ),
        (
            "two identical Authorization headers",
            get("/read").bearer(&rs).bearer(&rs),
            Want::InvalidRequest(REPEATED_HEADER),
        ),
        (
            "Basic and Bearer headers",
            get("/read")
                .header("authorization", "Basic YWxpY2U6c2VjcmV0")
                .bearer(&rs),
            Want::InvalidRequest(REPEATED_HEADER),
        ),
        (
            "header and query token",
            get(&format!("/read?access_token={rs}")).bearer(&rs),
            Want::InvalidRequest(MULTIPLE_METHODS),
        ),
        (
            "header and empty query token",
            get("/read?x=1&access_token=").bearer(&rs),
            Want::InvalidRequest(MULTIPLE_METHODS),
        ),
        // The parameter's name is form-urlencoded too (RFC 6750 §2.3): however it is spelled,
        // it is a second method.
        (
            "header and query token named access%5Ftoken",
            get(&format!("/read?access%5Ftoken={rs}")).bearer(&rs),
            Want::InvalidRequest(MULTIPLE_METHODS),
        ),
        (
            "header and query token named %61ccess_token",
            get(&format!("/read?x=1&%61ccess_token={rs}")).bearer(&rs),
            Want::InvalidRequest(MULTIPLE_METHODS),
        ),
        // ── I3: unreadable ─────────────────────────────────────────────────────────────
        (
            "bad character `$`",
            get("/read").header("authorization", "Bearer abc$def"),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "space inside the token",
            get("/read").header("authorization", "Bearer abc def"),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "comma inside the token",
            get("/read").header("authorization", format!("Bearer {rs},x")),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "non-ASCII bytes",
            get("/read").header("authorization", b"Bearer tok\xc3\xa9n".as_slice()),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "only padding",
            get("/read").header("authorization", "Bearer ==="),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "not a JWT",
            get("/read").bearer("mF_9.B5f-4.1JqM"),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "opaque token",
            get("/read").bearer("2YotnFZFEjr1zCsicMWpAA"),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "bad base64 everywhere",
            get("/read").bearer("a.b.c"),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "header not JSON",
            get("/read").bearer(&header_not_json),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "payload not JSON (validly signed)",
            get("/read").bearer(&payload_not_json),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "payload bad base64 (validly signed)",
            get("/read").bearer(&payload_bad_base64),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "signature part missing",
            get("/read").bearer(&two_parts),
            Want::InvalidToken(MALFORMED),
        ),
        (
            "oversized Authorization header (9 KiB)",
            get("/read").bearer(&"a".repeat(9 * 1024)),
            Want::InvalidToken(TOO_LONG),
        ),
        (
            "oversized Authorization header (64 KiB)",
            get("/read").bearer(&"a".repeat(64 * 1024)),
            Want::InvalidToken(TOO_LONG),
        ),
        (
            "oversized but validly signed JWT",
            get("/read").bearer(&huge_jwt),
            Want::InvalidToken(TOO_LONG),
        ),
        // ── I4: refused ────────────────────────────────────────────────────────────────
        (
            "alg none",
            get("/read").bearer(&alg_none),
            Want::InvalidToken(ALG_NOT_ALLOWED),
        ),
        (
            "alg none with a known kid",
            get("/read").bearer(&alg_none_kid),
            Want::InvalidToken(ALG_NOT_ALLOWED),
        ),
        (
            "HS256 signed with the RSA public key, kid rs",
            get("/read").bearer(&confused(Some("rs"))),
            Want::InvalidToken(ALG_NOT_ALLOWED),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            get("/read").bearer(&confused(None)),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        (
            "RS256 under the HMAC key's kid",
            get("/read").bearer(&rs_as_hs),
            Want::InvalidToken(ALG_NOT_ALLOWED),
        ),
        (
            "tampered payload",
            get("/read").bearer(&tampered),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        (
            "stripped signature",
            get("/read").bearer(&stripped),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        (
            "foreign kid",
            get("/read").bearer(&foreign_kid),
            Want::InvalidToken(UNKNOWN_KEY),
        ),
        (
            "foreign key under a known kid",
            get("/read").bearer(&foreign_as_rs),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        (
            "foreign key without kid",
            get("/read").bearer(&foreign_no_kid),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        (
            "wrong iss",
            get("/read").bearer(&with(json!({ "iss": "https://evil.example" }))),
            Want::InvalidToken(WRONG_ISSUER),
        ),
        (
            "missing iss",
            get("/read").bearer(&with(json!({ "iss": null }))),
            Want::InvalidToken(MISSING_CLAIM),
        ),
        (
            "wrong aud",
            get("/read").bearer(&with(json!({ "aud": "https://other.example" }))),
            Want::InvalidToken(WRONG_AUDIENCE),
        ),
        (
            "wrong aud array",
            get("/read").bearer(&with(json!({ "aud": ["a", "b"] }))),
            Want::InvalidToken(WRONG_AUDIENCE),
        ),
        (
            "missing aud",
            get("/read").bearer(&with(json!({ "aud": null }))),
            Want::InvalidToken(MISSING_CLAIM),
        ),
        (
            "wrong typ JWT",
            get("/read").bearer(&typ(Some("JWT"))),
            Want::InvalidToken(WRONG_TYPE),
        ),
        (
            "missing typ",
            get("/read").bearer(&typ(None)),
            Want::InvalidToken(WRONG_TYPE),
        ),
        (
            "expired beyond leeway",
            get("/read").bearer(&with(json!({ "exp": now - 120 }))),
            Want::InvalidToken(EXPIRED),
        ),
        (
            "not yet valid beyond leeway",
            get("/read").bearer(&with(json!({ "nbf": now + 120 }))),
            Want::InvalidToken(NOT_YET_VALID),
        ),
        (
            "missing exp",
            get("/read").bearer(&with(json!({ "exp": null }))),
            Want::InvalidToken(MISSING_CLAIM),
        ),
        (
            "invalid token on the hidden route",
            get("/admin").bearer(&tampered),
            Want::InvalidToken(BAD_SIGNATURE),
        ),
        // ── I5: insufficient scope ─────────────────────────────────────────────────────
        (
            "scope missing",
            get("/read").bearer(&with(json!({ "scope": "profile" }))),
            Want::Scope("read"),
        ),
        (
            "no scope claim at all",
            get("/read").bearer(&with(json!({ "scope": null }))),
            Want::Scope("read"),
        ),
        (
            "scp array without the scope",
            get("/read").bearer(&with(json!({ "scope": null, "scp": ["profile"] }))),
            Want::Scope("read"),
        ),
        (
            "scope prefix is not the scope",
            get("/read").bearer(&with(json!({ "scope": "reader read:all" }))),
            Want::Scope("read"),
        ),
        (
            "step-up route, strong login but scope missing",
            get("/step-up").bearer(&with(json!({ "scope": "profile" }))),
            Want::Scope("read"),
        ),
        // ── I6: step-up ────────────────────────────────────────────────────────────────
        (
            "acr too weak",
            get("/step-up").bearer(&with(json!({ "acr": "pwd" }))),
            Want::StepUp(Some("mfa"), None),
        ),
        (
            "login too old",
            get("/step-up").bearer(&with(json!({ "auth_time": now - 3600 }))),
            Want::StepUp(None, Some(STEP_UP_MAX_AGE)),
        ),
        (
            "no acr, no auth_time",
            get("/step-up").bearer(&with(json!({ "acr": null, "auth_time": null }))),
            Want::StepUp(Some("mfa"), Some(STEP_UP_MAX_AGE)),
        ),
        (
            "weak and old, scope missing too",
            get("/step-up").bearer(&with(
                json!({ "acr": "pwd", "auth_time": now - 3600, "scope": "profile" }),
            )),
            Want::StepUp(Some("mfa"), Some(STEP_UP_MAX_AGE)),
        ),
        // ── I7: hidden ─────────────────────────────────────────────────────────────────
        (
            "hidden route without the scope",
            get("/admin").bearer(&rs),
            Want::Hidden,
        ),
        (
            "hidden route, no scope claim",
            get("/admin").bearer(&with(json!({ "scope": null }))),
            Want::Hidden,
        ),
    ]
}

#[tokio::test]
async fn contract_matrix_in_every_configuration() {
    let cases = cases();
    // Each configuration gets its own server; run them concurrently.
    let runs: Vec<_> = Cfg::all()
        .into_iter()
        .map(|cfg| {
            let cases = cases.clone();
            tokio::spawn(async move { run_matrix(cfg, &cases).await })
        })
        .collect();
    for run in runs {
        if let Err(e) = run.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The same contract, spelled out literally (no expectation builder in between).
#[tokio::test]
async fn exact_challenges_spelled_out() {
    let client = client();
    let minimal = serve(app(Emitter::new(REALM))).await;
    let verbose = serve(app(Emitter::new(REALM)
        .with_disclosure(Disclosure::Verbose)
        .with_resource_metadata(METADATA_URL)))
    .await;
    let rs = token(Key::Rs, &valid_claims());
    let expired = token(Key::Rs, &claims_with(json!({ "exp": now() - 3600 })));
    let profile = token(Key::Es, &claims_with(json!({ "scope": "profile" })));
    let weak = token(
        Key::Ed,
        &claims_with(json!({ "acr": "pwd", "auth_time": now() - 3600 })),
    );

    let r = Req::get("/read").send(&client, &minimal).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example""#)
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({
            "type": "https://docs.rs/tower-bearer/latest/tower_bearer/problem/#missing-credentials",
            "title": "Authentication required",
            "status": 401,
        })
    );

    let r = Req::get("/read").send(&client, &verbose).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="api.example", resource_metadata="https://api.example/.well-known/oauth-protected-resource""#
        )
    );

    let r = Req::get("/read")
        .header("authorization", "Bearer")
        .send(&client, &minimal)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="invalid_request""#)
    );

    let r = Req::get("/read")
        .bearer(&expired)
        .send(&client, &minimal)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="invalid_token""#)
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body.get("detail"), None);

    let r = Req::get("/read")
        .bearer(&expired)
        .send(&client, &verbose)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="api.example", error="invalid_token", error_description="invalid token: the access token expired", resource_metadata="https://api.example/.well-known/oauth-protected-resource""#
        )
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({
            "type": "https://docs.rs/tower-bearer/latest/tower_bearer/problem/#invalid-token",
            "title": "Invalid access token",
            "status": 401,
            "detail": "invalid token: the access token expired",
        })
    );

    let r = Req::get("/read")
        .bearer(&profile)
        .send(&client, &minimal)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="insufficient_scope", scope="read""#)
    );

    let r = Req::get("/step-up")
        .bearer(&weak)
        .send(&client, &minimal)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="api.example", error="insufficient_user_authentication", acr_values="mfa", max_age="300""#
        )
    );

    let r = Req::get("/admin").bearer(&rs).send(&client, &verbose).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("www-authenticate"), None);

    let grpc = serve(app(Emitter::new(REALM).with_grpc(true))).await;
    let r = Req::get("/read")
        .method(Method::POST)
        .header("content-type", "application/grpc+proto")
        .bearer(&profile)
        .send(&client, &grpc)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("7"));
    assert_eq!(r.header("grpc-message"), Some("Insufficient scope"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="insufficient_scope", scope="read""#)
    );

    // A REST service answers a caller that claims to speak gRPC over HTTP all the same.
    let r = Req::get("/read")
        .method(Method::POST)
        .header("content-type", "application/grpc+proto")
        .bearer(&profile)
        .send(&client, &minimal)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("grpc-status"), None);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="insufficient_scope", scope="read""#)
    );

    assert_still_serving(&client, &minimal).await;
    assert_still_serving(&client, &verbose).await;
    assert_still_serving(&client, &grpc).await;
}

/// The realm and the metadata URL are quoted-strings: `"` and `\` are escaped.
#[tokio::test]
async fn challenge_params_are_escaped() {
    let client = client();
    let base = serve(app(Emitter::new(r#"my "quoted" \realm"#)
        .with_resource_metadata(r#"https://api.example/meta?q="x""#)))
    .await;
    let r = Req::get("/read").send(&client, &base).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="my \"quoted\" \\realm", resource_metadata="https://api.example/meta?q=\"x\"""#
        )
    );
    let r = Req::get("/read").bearer("a.b.c").send(&client, &base).await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="my \"quoted\" \\realm", error="invalid_token", resource_metadata="https://api.example/meta?q=\"x\"""#
        )
    );
    assert_still_serving(&client, &base).await;
}

/// `Accept` negotiation: a client that accepts JSON gets the problem document, one that excludes
/// it gets none.
#[tokio::test]
async fn problem_body_follows_accept() {
    let client = client();
    let base = serve(app(Emitter::new(REALM))).await;
    for (accept, body) in [
        ("application/problem+json", true),
        ("application/json", true),
        ("*/*", true),
        ("text/html, application/json;q=0.9", true),
        ("text/html", false),
        ("application/json;q=0", false),
        // The most specific range decides (RFC 9110 §12.5.1), whatever the order; parameter
        // names are case-insensitive.
        ("*/*, application/problem+json;q=0", false),
        ("application/problem+json;Q=0, */*", false),
        ("*/*;q=0, application/problem+json", true),
    ] {
        let r = Req::get("/read")
            .header("accept", accept)
            .send(&client, &base)
            .await;
        assert_eq!(r.status, 401, "{accept}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="api.example""#),
            "{accept}"
        );
        assert_eq!(!r.body.is_empty(), body, "{accept}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            body.then_some("application/problem+json"),
            "{accept}"
        );
    }
    assert_still_serving(&client, &base).await;
}

/// The query method, when enabled: I2 for a repeated or empty `access_token`.
#[tokio::test]
async fn query_method_when_enabled() {
    let client = client();
    for cfg in Cfg::all() {
        let base = serve(app_with_extractor(
            cfg.emitter(),
            BearerExtractor::new().allow_query(true),
        ))
        .await;
        let rs = token(Key::Rs, &valid_claims());
        let expired = token(Key::Rs, &claims_with(json!({ "exp": now() - 3600 })));
        let cases = [
            (
                "query token",
                Req::get(format!("/me?access_token={rs}")),
                Want::Ok("alice"),
            ),
            (
                "percent-encoded query token",
                Req::get(format!("/me?x=1&access_token={}", rs.replace('.', "%2E"))),
                Want::Ok("alice"),
            ),
            (
                "repeated access_token",
                Req::get(format!("/me?access_token={rs}&access_token={rs}")),
                Want::InvalidRequest(REPEATED_PARAM),
            ),
            (
                "access_token repeated under another spelling",
                Req::get(format!("/me?access_token={rs}&access%5Ftoken={rs}")),
                Want::InvalidRequest(REPEATED_PARAM),
            ),
            (
                "query token named with percent-escapes",
                Req::get(format!("/me?%61ccess_token={rs}")),
                Want::Ok("alice"),
            ),
            (
                "empty access_token",
                Req::get("/me?access_token="),
                Want::InvalidRequest(EMPTY_TOKEN),
            ),
            (
                "header and query",
                Req::get(format!("/me?access_token={rs}")).bearer(&rs),
                Want::InvalidRequest(MULTIPLE_METHODS),
            ),
            (
                "expired query token",
                Req::get(format!("/me?access_token={expired}")),
                Want::InvalidToken(EXPIRED),
            ),
            (
                "bad characters in the query token",
                Req::get("/me?access_token=abc%24def"),
                Want::InvalidToken(MALFORMED),
            ),
        ];
        for (name, req, want) in &cases {
            for variant in [Variant::Plain, Variant::Head, Variant::Html, Variant::Grpc] {
                let reply = variant_of(req, variant).send(&client, &base).await;
                check(name, cfg, variant, want, &reply);
            }
        }
        assert_still_serving(&client, &base).await;
    }
}

/// Algorithm confusion against a validator holding only the RSA public key.
#[tokio::test]
async fn algorithm_confusion_with_a_single_rsa_key() {
    let client = client();
    let base = serve(routes().layer(ValidateBearerLayer::new(
        rsa_only_validator(),
        Emitter::new(REALM),
    )))
    .await;
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let confused = token_with_header(
        &header,
        &valid_claims(),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64(&payload)
    );
    let es = token(Key::Es, &valid_claims());
    let invalid_token = Some(r#"Bearer realm="api.example", error="invalid_token""#);
    for (name, bad) in [
        ("HS256 with the RSA key", &confused),
        ("alg none", &alg_none),
        ("ES256", &es),
    ] {
        let r = Req::get("/me").bearer(bad).send(&client, &base).await;
        assert_eq!(r.status, 401, "{name}");
        assert_eq!(r.header("www-authenticate"), invalid_token, "{name}");
    }
    // The RSA key still verifies (its token carries a `kid` the key has none for: accepted).
    let rs = token(Key::Rs, &valid_claims());
    let r = Req::get("/me").bearer(&rs).send(&client, &base).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "alice"));
}

/// I9: authentication (and authorization) run before the application looks at the request.
#[tokio::test]
async fn authentication_runs_before_request_validation() {
    let client = client();
    let base = serve(app(Emitter::new(REALM))).await;
    let rs = token(Key::Rs, &valid_claims());
    let expired = token(Key::Rs, &claims_with(json!({ "exp": now() - 3600 })));
    let profile = token(Key::Rs, &claims_with(json!({ "scope": "profile" })));
    let bad_json = || {
        Req::get("/json")
            .method(Method::POST)
            .header("content-type", "application/json")
            .body(r#"{"unterminated": "#)
    };

    // Valid token, malformed body: the application's own 400, no challenge.
    let r = bad_json().bearer(&rs).send(&client, &base).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("www-authenticate"), None);
    assert_ne!(r.header("content-type"), Some("application/problem+json"));

    // The same body without a token: 401 first.
    let r = bad_json().send(&client, &base).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example""#)
    );

    // With a bad token: 401 invalid_token.
    let r = bad_json().bearer(&expired).send(&client, &base).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="invalid_token""#)
    );

    // With a token lacking the scope: 403 before the body is looked at.
    let r = bad_json().bearer(&profile).send(&client, &base).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="insufficient_scope", scope="read""#)
    );

    // Both fine: the handler sees body and claims.
    let r = Req::get("/json")
        .method(Method::POST)
        .header("content-type", "application/json")
        .body(r#"{"n": 1}"#)
        .bearer(&rs)
        .send(&client, &base)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({ "sub": "alice", "body": { "n": 1 } })
    );
    assert_still_serving(&client, &base).await;
}

/// I7: a hidden resource looks exactly like one that does not exist, in every body mode and
/// disclosure level.
#[tokio::test]
async fn hidden_route_is_indistinguishable_from_a_missing_one() {
    let client = client();
    for emitter in [
        Emitter::new(REALM),
        Emitter::new(REALM).with_disclosure(Disclosure::Verbose),
        Emitter::new(REALM).with_body_mode(BodyMode::HeadersOnly),
    ] {
        let base = serve(app(emitter)).await;
        let rs = token(Key::Rs, &valid_claims());
        let hidden = Req::get("/admin").bearer(&rs).send(&client, &base).await;
        let missing = Req::get("/no-such-route")
            .bearer(&rs)
            .send(&client, &base)
            .await;
        assert_eq!(hidden.status, 404);
        assert_eq!(missing.status, 404);
        let mut hidden_headers = hidden.headers.clone();
        let mut missing_headers = missing.headers.clone();
        hidden_headers.remove("date");
        missing_headers.remove("date");
        assert_eq!(hidden_headers, missing_headers);
        assert_eq!(hidden.body, missing.body);
        assert_still_serving(&client, &base).await;
    }
}

/// Many failures in a row over one kept-alive connection, concurrently: nothing panics, nothing
/// leaks into the next request.
#[tokio::test]
async fn server_keeps_serving_under_concurrent_failures() {
    let client = client();
    let base = serve(app(Emitter::new(REALM).with_disclosure(Disclosure::Verbose))).await;
    let good = token(Key::Ed, &valid_claims());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = client.clone();
        let base = base.clone();
        let good = good.clone();
        tasks.push(tokio::spawn(async move {
            let (req, status) = match i % 4 {
                0 => (Req::get("/read").bearer(&"x".repeat(10_000)), 401),
                1 => (Req::get("/read").bearer("a.b.c"), 401),
                2 => (Req::get("/read").bearer(&good).bearer(&good), 400),
                _ => (Req::get("/read").bearer(&good), 200),
            };
            let r = req.send(&client, &base).await;
            assert_eq!(r.status, status, "{r:?}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_still_serving(&client, &base).await;
}

/// Form-body tokens (RFC 6750 §2.2) through `FormTokenLayer`, in front of the validation
/// layer: the same rules as the other methods — names matched after decoding, the length limit
/// of the extractor.
#[tokio::test]
async fn form_body_tokens() {
    use axum::{Router, body::Body};
    use tower::ServiceBuilder;
    use tower_bearer::{body::MaybeBuffered, token::form::FormTokenLayer};

    let client = client();
    let rs = token(Key::Rs, &valid_claims());
    let form = |body: String| {
        let length = body.len().to_string();
        Req::get("/me")
            .method(Method::POST)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", length)
            .body(body)
    };
    for cfg in Cfg::all() {
        let service = ServiceBuilder::new()
            .layer(FormTokenLayer::new())
            .map_request(|request: http::Request<MaybeBuffered<Body>>| request.map(Body::new))
            .layer(
                ValidateBearerLayer::new(validator(), cfg.emitter())
                    .extractor(BearerExtractor::new().max_token_length(2048)),
            )
            .service(routes());
        let base = serve(Router::new().fallback_service(service)).await;
        let cases = [
            (
                "form token",
                form(format!("x=1&access_token={rs}")),
                Want::Ok("alice"),
            ),
            (
                "form token named with percent-escapes",
                form(format!("%61ccess%5Ftoken={rs}")),
                Want::Ok("alice"),
            ),
            (
                "header and a form token spelled access%5Ftoken",
                form(format!("access%5Ftoken={rs}")).bearer(&rs),
                Want::InvalidRequest(MULTIPLE_METHODS),
            ),
            (
                "form token repeated under another spelling",
                form(format!("access_token={rs}&%61ccess_token={rs}")),
                Want::InvalidRequest(REPEATED_PARAM),
            ),
            (
                "form token over the extractor's length limit",
                form(format!("access_token={}", "a".repeat(3000))),
                Want::InvalidToken(TOO_LONG),
            ),
        ];
        for (name, req, want) in &cases {
            let reply = req.send(&client, &base).await;
            check(name, cfg, Variant::Plain, want, &reply);
        }
        assert_still_serving(&client, &base).await;
    }
}

/// Optional authentication: a request without bearer credentials reaches the handler without
/// claims (`Option<Authenticated<C>>` is `None`); a token that is sent is validated as ever.
#[tokio::test]
async fn optional_authentication_lets_anonymous_requests_through_but_not_bad_tokens() {
    use axum::{Router, routing::get};
    use tower_bearer::axum::Authenticated;
    use tower_bearer::validate::StandardClaims;

    let client = client();
    let who = |claims: Option<Authenticated<StandardClaims>>| async move {
        claims.map_or("anonymous".to_owned(), |Authenticated(c)| {
            c.sub.clone().unwrap_or_default()
        })
    };
    let app = Router::new()
        .route("/who", get(who))
        .layer(ValidateBearerLayer::new(validator(), Emitter::new(REALM)).optional());
    let base = serve(app).await;
    let rs = token(Key::Rs, &valid_claims());
    let expired = token(Key::Rs, &claims_with(json!({ "exp": now() - 3600 })));

    let anonymous = Req::get("/who").send(&client, &base).await;
    assert_eq!(
        (anonymous.status.as_u16(), anonymous.text()),
        (200, "anonymous")
    );
    let other_scheme = Req::get("/who")
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .send(&client, &base)
        .await;
    assert_eq!(
        (other_scheme.status.as_u16(), other_scheme.text()),
        (200, "anonymous")
    );
    let alice = Req::get("/who").bearer(&rs).send(&client, &base).await;
    assert_eq!((alice.status.as_u16(), alice.text()), (200, "alice"));
    let bad = Req::get("/who").bearer(&expired).send(&client, &base).await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="invalid_token""#)
    );
    let twice = Req::get(format!("/who?access_token={rs}"))
        .bearer(&rs)
        .send(&client, &base)
        .await;
    assert_eq!(twice.status, 400);
    assert_eq!(
        twice.header("www-authenticate"),
        Some(r#"Bearer realm="api.example", error="invalid_request""#)
    );
}
