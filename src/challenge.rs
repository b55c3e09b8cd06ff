//! `WWW-Authenticate` challenges: building ours and parsing the upstream's.
//!
//! A [`Challenge`] is one auth-scheme with either a token68 or a list of auth-params
//! (RFC 9110 §11.2, §11.6.1; the Bearer scheme's params are in RFC 6750 §3).
//!
//! # Serialization
//!
//! [`Display`](std::fmt::Display) and [`Challenge::to_header_value`] write one canonical form:
//! `Scheme p1="v1", p2="v2"`, or `Scheme abc==` for a token68, or just `Scheme`. Params are
//! separated by a comma and a space and appear at most once; values are always quoted-strings
//! with `"` and `\` backslash-escaped (RFC 9110 §5.6.4), even where a bare token would do.
//!
//! The builder never produces an invalid field value, so only names and schemes can be
//! rejected: in param *values*, control characters other than horizontal tab (CR, LF, NUL,
//! DEL, …) are replaced with a space. Non-ASCII characters are kept as their UTF-8 bytes,
//! which the grammar allows as `obs-text`; note that [`http::HeaderValue::to_str`] refuses
//! such values, so read them back with [`Challenge::from_headers`] instead.
//!
//! # Parsing
//!
//! [`Challenge::parse_list`] accepts the full `#challenge` grammar: several challenges in one
//! field value, empty list elements (`, ,`), whitespace around `,` and `=`, token or
//! quoted-string param values, and quoted-pair escapes. Scheme and param-name comparisons are
//! ASCII case-insensitive; the original spelling is kept. Where the grammar is ambiguous or
//! real servers are sloppy, the parser follows common implementations:
//!
//! - Right after the scheme, an item of token68 syntax that is followed by the end of the value
//!   or a comma (`Negotiate abc==`, `Basic abc=`) is a token68; anything else there is the first
//!   auth-param. A token68 is recognized nowhere else.
//! - After a comma, `token =` continues the current challenge's params, while any other token
//!   starts a new challenge (`Basic realm="x", Bearer`).
//! - Params that follow a bare scheme after a comma (`Bearer, error="invalid_token"`) belong to
//!   it, since they cannot start a challenge of their own.
//! - If a challenge repeats a param name, the first occurrence wins.
//!
//! ```
//! use tower_bearer::challenge::Challenge;
//!
//! let ours = Challenge::bearer("api")
//!     .with_param("error", "insufficient_scope")?
//!     .with_param("scope", "read write")?;
//! assert_eq!(
//!     ours.to_string(),
//!     r#"Bearer realm="api", error="insufficient_scope", scope="read write""#
//! );
//!
//! let theirs = Challenge::parse_list(r#"Basic realm="x", bearer error=invalid_token"#)?;
//! assert_eq!(theirs.len(), 2);
//! assert!(theirs[1].is_scheme("Bearer"));
//! assert_eq!(theirs[1].param("Error"), Some("invalid_token"));
//! # Ok::<(), tower_bearer::challenge::ChallengeError>(())
//! ```

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header::WWW_AUTHENTICATE};

use crate::syntax::{is_tchar, is_token, is_token68, is_token68_char};

/// One challenge: an auth-scheme with either a token68 or a list of auth-params.
///
/// Equality compares the scheme, names and values exactly as spelled; use
/// [`is_scheme`](Self::is_scheme) and [`param`](Self::param) for case-insensitive lookups.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    body: Body,
}

/// A challenge carries a token68 or params, never both; a bare scheme has no params.
#[derive(Clone, PartialEq, Eq)]
enum Body {
    Params(Vec<(String, String)>),
    Token68(String),
}

/// Why a challenge could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The auth-scheme is empty or contains a character not allowed in an HTTP token.
    #[error("invalid auth-scheme: must be a non-empty HTTP token (RFC 9110 §5.6.2)")]
    InvalidScheme,
    /// The auth-param name is empty or contains a character not allowed in an HTTP token.
    #[error("invalid auth-param name: must be a non-empty HTTP token (RFC 9110 §5.6.2)")]
    InvalidParamName,
    /// The value does not have token68 syntax.
    #[error("invalid token68: expected letters, digits, `-._~+/`, then optional `=` padding")]
    InvalidToken68,
    /// A token68 was added to a challenge with params, or a param to one with a token68.
    #[error("a challenge carries either a token68 or auth-params, not both")]
    MixedToken68AndParams,
    /// The field value does not follow the `#challenge` grammar.
    #[error("malformed WWW-Authenticate value at byte {position}")]
    Syntax {
        /// Byte offset in the parsed value where the grammar was first violated.
        position: usize,
    },
}

impl Challenge {
    /// A challenge with this scheme and no params, serialized as just the scheme.
    ///
    /// # Errors
    ///
    /// [`ChallengeError::InvalidScheme`] if `scheme` is not an HTTP token.
    pub fn new(scheme: &str) -> Result<Self, ChallengeError> {
        if !is_token(scheme) {
            return Err(ChallengeError::InvalidScheme);
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            body: Body::Params(Vec::new()),
        })
    }

    /// The bare Bearer challenge `Bearer realm="<realm>"` (RFC 6750 §3).
    ///
    /// Control characters in `realm` are replaced with a space, as in
    /// [`with_param`](Self::with_param).
    pub fn bearer(realm: &str) -> Self {
        Self {
            scheme: "Bearer".to_owned(),
            body: Body::Params(vec![("realm".to_owned(), sanitize(realm))]),
        }
    }

    /// Sets an auth-param, keeping each name at most once.
    ///
    /// A param with the same name (ASCII case-insensitive) is replaced where it stands, taking
    /// the new spelling of the name; otherwise the param is appended. Control characters other
    /// than horizontal tab in `value` are replaced with a space, so any value is accepted.
    ///
    /// # Errors
    ///
    /// [`ChallengeError::InvalidParamName`] if `name` is not an HTTP token;
    /// [`ChallengeError::MixedToken68AndParams`] if the challenge has a token68.
    pub fn with_param(mut self, name: &str, value: &str) -> Result<Self, ChallengeError> {
        if !is_token(name) {
            return Err(ChallengeError::InvalidParamName);
        }
        let Body::Params(params) = &mut self.body else {
            return Err(ChallengeError::MixedToken68AndParams);
        };
        let param = (name.to_owned(), sanitize(value));
        match params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(existing) => *existing = param,
            None => params.push(param),
        }
        Ok(self)
    }

    /// Sets the token68, replacing any previous one.
    ///
    /// # Errors
    ///
    /// [`ChallengeError::MixedToken68AndParams`] if the challenge has params;
    /// [`ChallengeError::InvalidToken68`] if `token68` does not have token68 syntax.
    pub fn with_token68(mut self, token68: &str) -> Result<Self, ChallengeError> {
        if matches!(&self.body, Body::Params(params) if !params.is_empty()) {
            return Err(ChallengeError::MixedToken68AndParams);
        }
        if !is_token68(token68.as_bytes()) {
            return Err(ChallengeError::InvalidToken68);
        }
        self.body = Body::Token68(token68.to_owned());
        Ok(self)
    }

    /// The auth-scheme as spelled.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the auth-scheme is `scheme`, compared ASCII case-insensitively.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The unescaped value of the param `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The params in order, as `(name, unescaped value)`; empty for a token68 challenge.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        let params: &[(String, String)] = match &self.body {
            Body::Params(params) => params,
            Body::Token68(_) => &[],
        };
        params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The token68, if the challenge carries one.
    pub fn token68(&self) -> Option<&str> {
        match &self.body {
            Body::Token68(token68) => Some(token68),
            Body::Params(_) => None,
        }
    }

    /// The challenge as a header value; its bytes are exactly the [`Display`](fmt::Display) form.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every constructor keeps the scheme, names and token68 to token characters and values
        // free of control characters, so this cannot fail; the fallback only keeps this path
        // free of panics.
        HeaderValue::from_maybe_shared(Bytes::from(self.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Parses one `WWW-Authenticate` field value, which may hold several challenges.
    ///
    /// An empty value (or one of only commas) yields no challenges. See the
    /// [module docs](self) for how ambiguities are resolved.
    ///
    /// # Errors
    ///
    /// [`ChallengeError::Syntax`] at the first byte that breaks the `#challenge` grammar.
    pub fn parse_list(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
        let mut p = Parser { src: value, pos: 0 };
        let mut challenges: Vec<Challenge> = Vec::new();
        loop {
            if !p.next_element() {
                return Ok(challenges);
            }
            let start = p.pos;
            let name = p.token()?;
            let spaced = p.skip_ows();
            if p.peek() == Some(b'=') {
                // `token BWS "="` can only be another auth-param of the current challenge.
                let Some(Challenge {
                    body: Body::Params(params),
                    ..
                }) = challenges.last_mut()
                else {
                    return Err(ChallengeError::Syntax { position: start });
                };
                let value = p.param_value()?;
                keep_param(params, name, value);
            } else {
                let body = if spaced && !p.at_element_end() {
                    match p.token68() {
                        Some(token68) => Body::Token68(token68.to_owned()),
                        None => {
                            let name = p.token()?;
                            p.skip_ows();
                            Body::Params(vec![(name.to_owned(), p.param_value()?)])
                        }
                    }
                } else {
                    Body::Params(Vec::new())
                };
                challenges.push(Challenge {
                    scheme: name.to_owned(),
                    body,
                });
            }
            p.skip_ows();
            match p.peek() {
                None => return Ok(challenges),
                Some(b',') => p.pos += 1,
                Some(_) => return Err(p.error()),
            }
        }
    }

    /// All challenges from every `WWW-Authenticate` field line, in order.
    ///
    /// Lenient by design, for reading upstream responses: a line that breaks the grammar is
    /// read as one challenge whose params are separated by whitespace instead of commas (a
    /// common server mistake) if it can be, and skipped otherwise; bytes that are not UTF-8 are
    /// read as U+FFFD (they can only be valid inside quoted-strings, so the rest of that
    /// challenge is still usable).
    pub fn from_headers(headers: &HeaderMap) -> Vec<Challenge> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|line| {
                let line = String::from_utf8_lossy(line.as_bytes());
                Self::parse_list(&line)
                    .ok()
                    .or_else(|| Self::parse_without_commas(&line).map(|c| vec![c]))
            })
            .flatten()
            .collect()
    }

    /// `Scheme name=value name="value"`: one challenge whose params lack their commas.
    fn parse_without_commas(value: &str) -> Option<Challenge> {
        let mut p = Parser { src: value, pos: 0 };
        p.skip_ows();
        let scheme = p.token().ok()?.to_owned();
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            if !p.next_element() {
                return Some(Challenge {
                    scheme,
                    body: Body::Params(params),
                });
            }
            let name = p.token().ok()?;
            p.skip_ows();
            if p.peek() != Some(b'=') {
                return None;
            }
            let value = p.param_value().ok()?;
            keep_param(&mut params, name, value);
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        match &self.body {
            Body::Token68(token68) => write!(f, " {token68}"),
            Body::Params(params) => {
                for (i, (name, value)) in params.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{name}=\"")?;
                    write_escaped(f, value)?;
                    f.write_str("\"")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Params<'a>(&'a [(String, String)]);
        impl fmt::Debug for Params<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(n, v)| (n, v)))
                    .finish()
            }
        }

        let mut d = f.debug_struct("Challenge");
        d.field("scheme", &self.scheme);
        match &self.body {
            Body::Params(params) => d.field("params", &Params(params)),
            // Opaque, and for schemes like Negotiate a security-context token: not for logs.
            Body::Token68(_) => d.field("token68", &format_args!("<redacted>")),
        };
        d.finish()
    }
}

/// Writes `value` as the inside of a quoted-string: `"` and `\` get a backslash.
fn write_escaped(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let mut run = 0;
    for (i, b) in value.bytes().enumerate() {
        if b == b'"' || b == b'\\' {
            f.write_str(&value[run..i])?;
            f.write_str("\\")?;
            run = i;
        }
    }
    f.write_str(&value[run..])
}

/// Replaces the characters a quoted-string cannot hold (controls other than HTAB) with a space.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_control() && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The most auth-params kept of one challenge when parsing; the rest are read (for the syntax)
/// and dropped. Real challenges have a handful; the bound keeps parsing a hostile field linear.
pub const MAX_PARAMS: usize = 32;

/// Keeps the first occurrence of each param name (RFC 9110 §11.2: each at most once), up to
/// [`MAX_PARAMS`].
fn keep_param(params: &mut Vec<(String, String)>, name: &str, value: String) {
    if params.len() < MAX_PARAMS && !params.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
        params.push((name.to_owned(), value));
    }
}

/// HTAB, SP, VCHAR and obs-text: what a quoted-string may hold, escaped or not.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

/// A cursor over a field value. It only stops on ASCII bytes, so every slice it takes lies on
/// `char` boundaries.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn error(&self) -> ChallengeError {
        ChallengeError::Syntax { position: self.pos }
    }

    /// Skips OWS/BWS and reports whether there was any.
    fn skip_ows(&mut self) -> bool {
        let start = self.pos;
        self.skip_while(|b| b == b' ' || b == b'\t');
        self.pos > start
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// Skips to the start of the next list element, past empty ones (RFC 9110 §5.6.1.2 allows
    /// them); `false` at the end of the value.
    fn next_element(&mut self) -> bool {
        self.skip_ows();
        while self.peek() == Some(b',') {
            self.pos += 1;
            self.skip_ows();
        }
        self.peek().is_some()
    }

    /// Whether the current list element ends here (OWS already skipped).
    fn at_element_end(&self) -> bool {
        matches!(self.peek(), None | Some(b','))
    }

    fn token(&mut self) -> Result<&'a str, ChallengeError> {
        match self.skip_while(is_tchar) {
            "" => Err(self.error()),
            token => Ok(token),
        }
    }

    /// A token68 that makes up the rest of its list element; otherwise consumes nothing.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !self.skip_while(is_token68_char).is_empty() {
            self.skip_while(|b| b == b'=');
            let end = self.pos;
            self.skip_ows();
            if self.at_element_end() {
                self.pos = end;
                return Some(&self.src[start..end]);
            }
        }
        self.pos = start;
        None
    }

    /// `"=" BWS ( token / quoted-string )`, starting at the `=`.
    fn param_value(&mut self) -> Result<String, ChallengeError> {
        if self.peek() != Some(b'=') {
            return Err(self.error());
        }
        self.pos += 1;
        self.skip_ows();
        if self.peek() == Some(b'"') {
            self.quoted_string()
        } else {
            self.token().map(str::to_owned)
        }
    }

    /// A quoted-string starting at its opening `"`, unescaped (RFC 9110 §5.6.4).
    fn quoted_string(&mut self) -> Result<String, ChallengeError> {
        self.pos += 1;
        let mut value = String::new();
        let mut run = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    value.push_str(&self.src[run..self.pos]);
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    value.push_str(&self.src[run..self.pos]);
                    self.pos += 1;
                    // quoted-pair: drop the backslash, keep what it escapes. A non-ASCII
                    // character's continuation bytes are consumed as plain text after this.
                    if !self.peek().is_some_and(is_text) {
                        return Err(self.error());
                    }
                    run = self.pos;
                    self.pos += 1;
                }
                Some(b) if is_text(b) => self.pos += 1,
                // A control character, or the value ended inside the quotes.
                _ => return Err(self.error()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Vec<Challenge> {
        Challenge::parse_list(value).unwrap()
    }

    #[test]
    fn a_hostile_number_of_params_is_bounded() {
        // 390 KiB of distinct params: each kept one is compared with at most MAX_PARAMS others.
        let params: Vec<String> = (0..40_000).map(|i| format!("p{i}=v")).collect();
        let value = format!("Bearer {}", params.join(", "));
        let parsed = parse(&value);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].params().count(), MAX_PARAMS);
        assert_eq!(parsed[0].param("p0"), Some("v"));
        assert_eq!(parsed[0].param(&format!("p{}", MAX_PARAMS - 1)), Some("v"));
        assert_eq!(parsed[0].param(&format!("p{MAX_PARAMS}")), None);
        // The same without commas (the lenient path).
        let value = format!("Bearer {}", params.join(" "));
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            Challenge::from_headers(&headers)[0].params().count(),
            MAX_PARAMS
        );
    }

    fn params(challenge: &Challenge) -> Vec<(&str, &str)> {
        challenge.params().collect()
    }

    #[test]
    fn bare_bearer() {
        let challenge = Challenge::bearer("api");
        assert_eq!(challenge.to_string(), r#"Bearer realm="api""#);
        assert_eq!(challenge.to_header_value(), r#"Bearer realm="api""#);
    }

    #[test]
    fn error_and_scope_are_comma_separated() {
        let challenge = Challenge::bearer("api")
            .with_param("error", "insufficient_scope")
            .unwrap()
            .with_param("scope", "a b")
            .unwrap();
        assert_eq!(
            challenge.to_string(),
            r#"Bearer realm="api", error="insufficient_scope", scope="a b""#
        );
    }

    #[test]
    fn values_are_escaped() {
        let challenge = Challenge::bearer(r#"a"b\c"#);
        assert_eq!(challenge.to_string(), r#"Bearer realm="a\"b\\c""#);
        assert_eq!(challenge.param("realm"), Some(r#"a"b\c"#));
    }

    #[test]
    fn replacing_a_param_keeps_one_in_place() {
        let challenge = Challenge::bearer("api")
            .with_param("error", "invalid_token")
            .unwrap()
            .with_param("scope", "a")
            .unwrap()
            .with_param("ERROR", "insufficient_scope")
            .unwrap();
        assert_eq!(
            challenge.to_string(),
            r#"Bearer realm="api", ERROR="insufficient_scope", scope="a""#
        );
    }

    #[test]
    fn control_characters_become_spaces() {
        let challenge = Challenge::bearer("a\r\nb\0c\x7fd\te");
        assert_eq!(challenge.param("realm"), Some("a  b c d\te"));
        assert_eq!(
            challenge.to_header_value().as_bytes(),
            challenge.to_string().as_bytes()
        );
    }

    #[test]
    fn non_ascii_is_kept_as_utf8() {
        let challenge = Challenge::bearer("Zürich");
        assert_eq!(
            challenge.to_header_value().as_bytes(),
            "Bearer realm=\"Zürich\"".as_bytes()
        );
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, challenge.to_header_value());
        assert_eq!(Challenge::from_headers(&headers), vec![challenge]);
    }

    #[test]
    fn bare_scheme_and_token68() {
        let bare = Challenge::new("Negotiate").unwrap();
        assert_eq!(bare.to_string(), "Negotiate");
        let token68 = bare.with_token68("abc123==").unwrap();
        assert_eq!(token68.to_string(), "Negotiate abc123==");
        assert_eq!(token68.token68(), Some("abc123=="));
        assert_eq!(token68.params().count(), 0);
    }

    #[test]
    fn builder_errors() {
        assert_eq!(Challenge::new(""), Err(ChallengeError::InvalidScheme));
        assert_eq!(
            Challenge::new("Bear er"),
            Err(ChallengeError::InvalidScheme)
        );
        let bearer = Challenge::bearer("api");
        assert_eq!(
            bearer.clone().with_param("sc ope", "x"),
            Err(ChallengeError::InvalidParamName)
        );
        assert_eq!(
            bearer.clone().with_param("", "x"),
            Err(ChallengeError::InvalidParamName)
        );
        assert_eq!(
            bearer.with_token68("abc"),
            Err(ChallengeError::MixedToken68AndParams)
        );
        let negotiate = Challenge::new("Negotiate").unwrap();
        for bad in ["", "==", "a=b", "a b", "a\"", "a,"] {
            assert_eq!(
                negotiate.clone().with_token68(bad),
                Err(ChallengeError::InvalidToken68),
                "{bad:?}"
            );
        }
        assert_eq!(
            negotiate
                .with_token68("abc")
                .unwrap()
                .with_param("realm", "x"),
            Err(ChallengeError::MixedToken68AndParams)
        );
    }

    #[test]
    fn debug_shows_params_but_not_token68() {
        let challenge = Challenge::bearer("api");
        assert_eq!(
            format!("{challenge:?}"),
            r#"Challenge { scheme: "Bearer", params: {"realm": "api"} }"#
        );
        let negotiate = Challenge::new("Negotiate")
            .unwrap()
            .with_token68("c2VjcmV0")
            .unwrap();
        assert!(!format!("{negotiate:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn parses_an_expired_token_answer() {
        let [c] = &parse(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        )[..] else {
            panic!("expected one challenge")
        };
        assert!(c.is_scheme("bearer"));
        assert_eq!(
            params(c),
            [
                ("realm", "example"),
                ("error", "invalid_token"),
                ("error_description", "The access token expired"),
            ]
        );
    }

    #[test]
    fn parses_lowercase_scheme_and_token_value() {
        let challenges = parse("bearer error=invalid_token");
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme(), "bearer");
        assert!(challenges[0].is_scheme("BEARER"));
        assert_eq!(challenges[0].param("ERROR"), Some("invalid_token"));
    }

    #[test]
    fn parses_two_challenges_in_one_field() {
        let challenges =
            parse(r#"Basic realm="x", Bearer realm="y", error="insufficient_scope", scope="a b""#);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].is_scheme("Basic"));
        assert_eq!(params(&challenges[0]), [("realm", "x")]);
        assert_eq!(
            params(&challenges[1]),
            [
                ("realm", "y"),
                ("error", "insufficient_scope"),
                ("scope", "a b")
            ]
        );
    }

    #[test]
    fn parses_token68_then_bare_scheme() {
        let challenges = parse("Negotiate abc123==, Bearer");
        assert_eq!(
            challenges,
            [
                Challenge::new("Negotiate")
                    .unwrap()
                    .with_token68("abc123==")
                    .unwrap(),
                Challenge::new("Bearer").unwrap(),
            ]
        );
    }

    #[test]
    fn parses_microsoft_style() {
        let challenges =
            parse(r#"Bearer authorization_uri="https://login/x", error="invalid_token""#);
        assert_eq!(challenges.len(), 1);
        assert_eq!(
            challenges[0].param("authorization_uri"),
            Some("https://login/x")
        );
        assert_eq!(challenges[0].param("error"), Some("invalid_token"));
    }

    #[test]
    fn parses_the_rfc_9110_example() {
        let challenges = parse(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        );
        assert_eq!(
            params(&challenges[0]),
            [
                ("realm", "apps"),
                ("type", "1"),
                ("title", r#"Login to "apps""#)
            ]
        );
        assert_eq!(params(&challenges[1]), [("realm", "simple")]);
    }

    #[test]
    fn tolerates_empty_elements_and_whitespace() {
        let challenges = parse(" , ,Basic\t,, Bearer  realm = \"x\" ,,\terror=y , ");
        assert_eq!(challenges.len(), 2);
        assert_eq!(params(&challenges[0]), []);
        assert_eq!(params(&challenges[1]), [("realm", "x"), ("error", "y")]);
        assert_eq!(parse(""), []);
        assert_eq!(parse(" , "), []);
    }

    #[test]
    fn token68_only_directly_after_the_scheme() {
        let padded = parse("Basic abc=");
        assert_eq!(padded[0].token68(), Some("abc="));
        let lone = parse("Negotiate abc, Basic");
        assert_eq!(lone[0].token68(), Some("abc"));
        assert!(lone[1].is_scheme("basic"));
        // `name=value` right after the scheme is a param, even when the value is a token.
        assert_eq!(parse("Bearer a=b")[0].param("a"), Some("b"));
        assert_eq!(parse("Bearer a = b")[0].param("a"), Some("b"));
    }

    #[test]
    fn params_after_a_bare_scheme_belong_to_it() {
        let challenges = parse(r#"Bearer, error="invalid_token""#);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].param("error"), Some("invalid_token"));
    }

    #[test]
    fn duplicate_params_keep_the_first() {
        let challenges = parse(r#"Bearer error="first", Error="second""#);
        assert_eq!(params(&challenges[0]), [("error", "first")]);
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            (r#"realm="x""#, 0),                   // a param with no challenge
            (r#"Bearer realm="x"#, 15),            // unterminated quoted-string
            (r#"Bearer realm="a\"#, 16),           // escape at the end
            ("Bearer realm=\"a\nb\"", 15),         // control character in a quoted-string
            (r#"Bearer realm="x" error="y""#, 17), // missing comma
            ("Bearer a=b, c=", 14),                // missing value
            ("Bearer realm=a b", 15),              // value is not one token
            (r#"Bearer"realm""#, 6),               // no space after the scheme
            ("Negotiate abc==, realm=x", 17),      // params after a token68
            ("Bearer abc==def", 11),               // `=` where a value should start
            ("=x", 0),                             // no scheme
            ("Bäarer", 1),                         // not a token
            ("Bearer =x", 0),                      // a param (named `Bearer`) with no challenge
        ];
        for (input, position) in cases {
            assert_eq!(
                Challenge::parse_list(input),
                Err(ChallengeError::Syntax { position }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn from_headers_reads_params_missing_their_commas() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="x" error="invalid_token""#),
        );
        let challenges = Challenge::from_headers(&headers);
        assert_eq!(challenges.len(), 1);
        assert!(challenges[0].is_scheme("bearer"));
        assert_eq!(challenges[0].param("error"), Some("invalid_token"));
        assert_eq!(challenges[0].param("realm"), Some("x"));
    }

    #[test]
    fn from_headers_reads_every_line_and_skips_bad_ones() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="x""#),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\""),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token", DPoP algs="ES256""#),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_bytes(b"Bearer realm=\"Z\xfcrich\", error=invalid_token").unwrap(),
        );
        let challenges = Challenge::from_headers(&headers);
        let schemes: Vec<_> = challenges.iter().map(Challenge::scheme).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP", "Bearer"]);
        assert_eq!(challenges[3].param("realm"), Some("Z\u{fffd}rich"));
        assert_eq!(challenges[3].param("error"), Some("invalid_token"));
    }
}
