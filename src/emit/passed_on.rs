//! Provider responses passed on to the caller (rows U1 and U6): what the caller must not see of
//! them, and the signals of ours they must not be able to forge.
//!
//! The outbound layers [`mark`] a response they pass on; the [`Emitter`] that renders the
//! caller's failures seals it on the way out: it removes `Proxy-Status` members that claim this
//! proxy's name and `Link`s with the [connect relation](super::CONNECT_RELATION) — only this
//! crate may say those —, then adds its own `Proxy-Status` to a plain `403` (row U6: the
//! response's [`UpstreamClass`] is [`Forbidden`](UpstreamClass::Forbidden)). So the proxy name is
//! configured once, on the emitter, and a provider cannot speak for the proxy.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::{CONNECT_RELATION, Emitter, PROXY_STATUS, proxy_status::ProxyStatus};
use crate::upstream::{classify::UpstreamClass, strip_hop_by_hop};

/// A response extension: this response comes from a provider and is passed on to the caller.
///
/// It carries nothing: what the provider's answer means is the response's [`UpstreamClass`]
/// (every response passed on by
/// [`RefreshAndRetry`](crate::upstream::refresh::RefreshAndRetry) has one), and a marker without
/// data costs no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PassedOn;

/// Prepares a provider's response for the caller and marks it [`PassedOn`]: removes the
/// hop-by-hop fields and the provider's `WWW-Authenticate` (its challenges name credentials the
/// caller does not hold, and could pass for ours). The response is labelled as a plain `403`
/// (row U6) when its [`UpstreamClass`] is [`Forbidden`](UpstreamClass::Forbidden).
pub fn mark<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    headers.remove(header::WWW_AUTHENTICATE);
    response.extensions_mut().insert(PassedOn);
}

impl Emitter {
    /// Seals `response` for the caller if it is marked [`PassedOn`]; see the
    /// [module docs](self).
    pub(crate) fn seal_passed_on<B>(&self, response: &mut Response<B>) {
        let extensions = response.extensions();
        if extensions.get::<PassedOn>().is_none() {
            return;
        }
        let forbidden = extensions.get::<UpstreamClass>() == Some(&UpstreamClass::Forbidden);
        let headers = response.headers_mut();
        let proxy = self.proxy_name();
        retain_members(headers, PROXY_STATUS, |member| !names_proxy(member, proxy));
        retain_members(headers, header::LINK, |link| !has_connect_relation(link));
        if forbidden {
            let ours = ProxyStatus::new(proxy).received_status(StatusCode::FORBIDDEN);
            headers.append(PROXY_STATUS, ours.to_header_value());
        }
    }
}

/// Keeps the list members of every `name` field for which `keep` holds; a field left empty is
/// removed, an unreadable one too (it cannot be checked).
fn retain_members(headers: &mut HeaderMap, name: http::HeaderName, keep: impl Fn(&str) -> bool) {
    if !headers.contains_key(&name) {
        return;
    }
    let mut changed = false;
    let mut kept = Vec::new();
    for value in headers.get_all(&name) {
        let Ok(text) = value.to_str() else {
            changed = true;
            continue;
        };
        let members = split_list(text);
        let before = members.len();
        let members: Vec<&str> = members.into_iter().filter(|m| keep(m)).collect();
        changed |= members.len() != before;
        if !members.is_empty() {
            kept.push(members.join(", "));
        }
    }
    if !changed {
        return;
    }
    headers.remove(&name);
    for value in kept {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.append(&name, value);
        }
    }
}

/// The members of a comma-separated list, trimmed, with commas inside quoted strings and `<…>`
/// (a `Link`'s target) left alone.
fn split_list(value: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                members.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    members.push(value[start..].trim());
    members.retain(|m| !m.is_empty());
    members
}

/// Whether a `Proxy-Status` member names `proxy`, as an sf-token or an sf-string — or as what
/// a lenient reader takes for one (a quoted name followed by junk: `"gw"x`).
fn names_proxy(member: &str, proxy: &str) -> bool {
    let name = member.split(';').next().unwrap_or_default().trim();
    let name = match name.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => name,
    };
    name.eq_ignore_ascii_case(proxy)
}

/// Whether a `Link` value names the connect relation anywhere in its parameters. Deliberately
/// loose — not a `rel` parser: a malformed value that a lenient client would still read as our
/// relation (`rel="<relation>"x`) must go too, and the relation is a URL no other link names.
fn has_connect_relation(link: &str) -> bool {
    let params = link.rsplit_once('>').map_or(link, |(_, params)| params);
    params
        .to_ascii_lowercase()
        .contains(&CONNECT_RELATION.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(forbidden: bool, fields: &[(&str, &str)]) -> HeaderMap {
        let mut response = Response::new(());
        for (name, value) in fields {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let class = if forbidden {
            UpstreamClass::Forbidden
        } else {
            UpstreamClass::NotAuthRelated
        };
        response.extensions_mut().insert(class);
        mark(&mut response);
        Emitter::new("api")
            .with_proxy_name("gw")
            .seal_passed_on(&mut response);
        response.headers().clone()
    }

    fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_plain_403_is_labelled_and_loses_the_providers_challenge() {
        let headers = sealed(
            true,
            &[
                ("www-authenticate", r#"Bearer realm="provider""#),
                ("connection", "x-private"),
                ("x-private", "1"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(all(&headers, "proxy-status"), ["gw; received-status=403"]);
        assert!(!headers.contains_key("www-authenticate"));
        assert!(!headers.contains_key("x-private"));
        assert_eq!(all(&headers, "content-type"), ["text/plain"]);
    }

    #[test]
    fn the_providers_own_signals_stay_but_ours_cannot_be_forged() {
        let connect = format!(r#"<https://gw.example/connect/p>; rel="{CONNECT_RELATION}""#);
        let headers = sealed(
            false,
            &[
                (
                    "proxy-status",
                    r#"cdn; error=http_request_error, GW; error=http_request_denied; details="a, b""#,
                ),
                ("proxy-status", r#""gw"; received-status=401"#),
                ("proxy-status", r#""gw"x; error=http_request_denied"#),
                (
                    "link",
                    &format!(r#"<https://p.example/a,b>; rel="next", {connect}, {connect}x"#),
                ),
            ],
        );
        assert_eq!(
            all(&headers, "proxy-status"),
            ["cdn; error=http_request_error"]
        );
        assert_eq!(
            all(&headers, "link"),
            [r#"<https://p.example/a,b>; rel="next""#]
        );
    }

    #[test]
    fn untouched_without_our_signals() {
        let headers = sealed(false, &[("proxy-status", "cdn"), ("link", "<a>; rel=next")]);
        assert_eq!(all(&headers, "proxy-status"), ["cdn"]);
        assert_eq!(all(&headers, "link"), ["<a>; rel=next"]);
    }
}
