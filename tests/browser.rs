//! The link lifecycle in a real browser: the example proxy in demo mode, its demo page driven
//! headless in Debian's Chromium (`tests/browser/demo.mjs`, with `playwright-core` from npm):
//! a call → the provider revokes the grant → the call answers `403` with the `Link` and the page
//! offers to re-link → re-link through the provider's consent page → back on the page → the
//! call succeeds; then unlink → the provider saw a revocation. Then a page on another origin
//! calls the proxy with `fetch()` and reads `Proxy-Status` and `Link` from the U4 answer.
//!
//! Needs `chromium` (`apt-get install chromium`) and `npm ci --prefix tests/browser`; `.ci/run`
//! and `scripts/test` do both. Screenshots of every step are left under
//! `target/tmp/browser-artifacts/` (not committed).

#[allow(dead_code)] // main.rs uses all of the example; this test uses a part.
#[path = "../examples/proxy/app.rs"]
mod app;

use std::process::Command;

use serde_json::Value;
use tower_bearer::emit::CONNECT_RELATION;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_relinks_and_unlinks_in_a_real_browser() {
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/demo.mjs");
    assert!(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/node_modules/playwright-core"
        ))
        .exists(),
        "playwright-core is missing: npm ci --prefix tests/browser"
    );
    let demo = app::demo::Demo::start().await.unwrap();
    let port = demo.listener.local_addr().unwrap().port();
    let proxy = format!("http://127.0.0.1:{port}");
    let other_origin = format!("http://localhost:{port}");
    let provider = demo.provider.clone();
    let _files = demo.files;
    tokio::spawn(async move {
        let _ = axum::serve(demo.listener, tower::make::Shared::new(demo.proxy)).await;
    });
    let artifacts = concat!(env!("CARGO_TARGET_TMPDIR"), "/browser-artifacts");
    let revoked_before = provider.refresh_stats().revoked;

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([driver, &proxy, &other_origin, artifacts])
            .output()
            .expect("node is needed (>= 20)")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the browser run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let step = |i: usize, name: &str| -> &Value {
        assert_eq!(seen[i]["step"], name, "step {i}: {seen:#?}");
        &seen[i]
    };
    let reauth_proxy_status = r#"tower-bearer-proxy; received-status=401; next-hop="demo"; details="upstream_reauth_required""#;
    let connect_link =
        format!("<http://127.0.0.1:{port}/connect/demo>; rel=\"{CONNECT_RELATION}\"");

    let linked = step(0, "call");
    assert_eq!(linked["status"], 200);
    assert_eq!(linked["relink_offered"], false);
    assert_eq!(step(1, "revoke")["status"], 204);
    let refused = step(2, "call");
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["relink_offered"], true);
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("proxy-status: {reauth_proxy_status}")),
        "{text}"
    );
    assert!(text.contains(&format!("link: {connect_link}")), "{text}");
    let consent = step(3, "consent");
    assert!(
        consent["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/authorize?", provider.base_url())),
        "{consent}"
    );
    assert!(consent["text"].as_str().unwrap().contains("Allow"));
    assert_eq!(
        step(4, "back")["url"],
        format!("http://127.0.0.1:{port}/demo")
    );
    let relinked = step(5, "call");
    assert_eq!(relinked["status"], 200);
    assert!(
        relinked["text"]
            .as_str()
            .unwrap()
            .contains("\"account\":\"alice\""),
        "{relinked}"
    );
    let unlinked = step(6, "unlink");
    assert_eq!(unlinked["status"], 200);
    assert!(
        unlinked["text"]
            .as_str()
            .unwrap()
            .ends_with(r#"{"provider":"demo","revoked":true}"#),
        "{unlinked}"
    );
    let links = step(7, "links");
    assert_eq!(links["status"], 200);
    assert!(
        links["text"].as_str().unwrap().ends_with(r#"{"links":[]}"#),
        "{links}"
    );
    // The re-link revoked the grant it replaced, the unlink the new one.
    assert_eq!(provider.refresh_stats().revoked, revoked_before + 2);

    let other = step(8, "other-origin");
    assert_eq!(
        other["url"],
        format!("http://localhost:{port}/demo/other-origin")
    );
    assert_eq!(other["status"], 403);
    assert_eq!(
        other["proxy_status"],
        r#"tower-bearer-proxy; error=http_request_denied; next-hop="demo"; details="upstream_reauth_required""#
    );
    assert_eq!(other["link"], connect_link);
}
