//! The walkthrough demo mode prints: shell-ready `curl` commands, each followed by what it
//! should show as `#   expect:` comments — a status, a header's exact value, a header's absence,
//! or a piece of the body (the last response's, when the command follows redirects).
//! `tests/proxy_walkthrough.rs` runs the printed commands and checks every expectation.

use std::fmt::Write as _;

use tower_bearer::emit::CONNECT_RELATION;

use super::{PROVIDER, SCOPE, USER, provider::ACCOUNT};

/// What the walkthrough talks about.
pub struct Demo<'a> {
    /// The proxy's origin.
    pub proxy: &'a str,
    /// The demo identity provider's issuer.
    pub idp: &'a str,
    /// The demo provider's origin.
    pub provider: &'a str,
    /// Alice's token, with the scope the proxy requires.
    pub token: &'a str,
    /// Alice's token without it.
    pub narrow_token: &'a str,
}

struct Step {
    title: String,
    command: String,
    expect: Vec<String>,
}

/// The walkthrough's text.
pub fn render(demo: &Demo<'_>) -> String {
    let Demo {
        proxy,
        idp,
        provider,
        token,
        narrow_token,
    } = *demo;
    let api = format!("{proxy}/api/{PROVIDER}/me");
    let get = |variable: &str, url: &str| {
        format!("curl -si -H \"Authorization: Bearer ${variable}\" '{url}'")
    };
    let post = |url: String| format!("curl -si -X POST '{url}'");
    let metadata = format!("{proxy}/.well-known/oauth-protected-resource");
    let reauth = format!(
        "proxy-status: tower-bearer-proxy; received-status=401; next-hop=\"{PROVIDER}\"; details=\"upstream_reauth_required\""
    );
    let steps = [
        Step {
            title: "No token: the proxy's own bare challenge (row I1)".into(),
            command: format!("curl -si '{api}'"),
            expect: vec![
                "401".into(),
                format!("www-authenticate: Bearer realm=\"demo\", resource_metadata=\"{metadata}\""),
            ],
        },
        Step {
            title: "With alice's token: the provider's answer, called with her upstream token".into(),
            command: get("TOKEN", &api),
            expect: vec!["200".into(), "body: \"token_generation\":1".into()],
        },
        Step {
            title: "The provider's clock jumps: alice's upstream token is expired, the proxy doesn't know".into(),
            command: post(format!("{provider}/demo/expire?account={ACCOUNT}")),
            expect: vec!["204".into()],
        },
        Step {
            title: "Transparent refresh: the provider says 403 TokenExpired (Power BI style); the proxy \
                    reads it as an expired token, refreshes (rotating the refresh token) and retries"
                .into(),
            command: get("TOKEN", &api),
            expect: vec!["200".into(), "body: \"token_generation\":2".into()],
        },
        Step {
            title: format!("Insufficient scope, the caller's side: NARROW lacks `{SCOPE}` (row I5)"),
            command: get("NARROW", &api),
            expect: vec![
                "403".into(),
                format!(
                    "www-authenticate: Bearer realm=\"demo\", error=\"insufficient_scope\", scope=\"{SCOPE}\", resource_metadata=\"{metadata}\""
                ),
            ],
        },
        Step {
            title: "Insufficient scope, the provider's side: its /admin wants a scope alice's link \
                    lacks — no Bearer challenge, her own token is fine (row U5)"
                .into(),
            command: get("TOKEN", &format!("{proxy}/api/{PROVIDER}/admin")),
            expect: vec![
                "403".into(),
                "proxy-status: tower-bearer-proxy; received-status=403; details=\"upstream_insufficient_scope\"".into(),
                "no www-authenticate".into(),
            ],
        },
        Step {
            title: "Alice revokes the proxy's access in the provider's settings".into(),
            command: post(format!("{provider}/demo/revoke?account={ACCOUNT}")),
            expect: vec!["204".into()],
        },
        Step {
            title: "The token is refused, the refresh token too (invalid_grant): alice must connect \
                    again, and the response says where (row U4)"
                .into(),
            command: get("TOKEN", &api),
            expect: vec![
                "403".into(),
                reauth,
                format!("link: <{proxy}/connect/{PROVIDER}>; rel=\"{CONNECT_RELATION}\""),
                "no www-authenticate".into(),
            ],
        },
        Step {
            title: "Re-link through the connect flow (PKCE, state, a browser-binding cookie; the demo \
                    provider consents at once), then back to return_to"
                .into(),
            command: format!(
                "curl -siL -b '' -H \"Authorization: Bearer $TOKEN\" '{proxy}/connect/{PROVIDER}?return_to=/api/{PROVIDER}/me'"
            ),
            expect: vec!["200".into(), "body: \"token_generation\":1".into()],
        },
    ];

    let mut text = String::new();
    let _ = writeln!(text, "tower-bearer example proxy — demo mode\n");
    let _ = writeln!(
        text,
        "  proxy            {proxy}   (provider `{PROVIDER}` at /api/{PROVIDER}/…)"
    );
    let _ = writeln!(
        text,
        "  demo IdP         {idp}   (the proxy's users; JWKS at {idp}/jwks)"
    );
    let _ = writeln!(
        text,
        "  demo provider    {provider}   (a third-party API and its OAuth server)\n"
    );
    let _ = writeln!(
        text,
        "In a browser: {proxy}/demo (call, revoke, re-link, unlink), and the same call from \
         another origin: {}/demo/other-origin\n",
        proxy.replacen("127.0.0.1", "localhost", 1)
    );
    let _ = writeln!(
        text,
        "Paste into a shell, top to bottom. `{USER}`'s tokens from the demo IdP (1 h):"
    );
    let _ = writeln!(text, "TOKEN='{token}'");
    let _ = writeln!(text, "NARROW='{narrow_token}'");
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(text, "\n# {}. {}", i + 1, step.title);
        let _ = writeln!(text, "{}", step.command);
        for expectation in &step.expect {
            let _ = writeln!(text, "#   expect: {expectation}");
        }
    }
    let _ = writeln!(
        text,
        "\nRFC 9728 metadata: curl -s '{metadata}'. Ctrl-C stops."
    );
    text
}
