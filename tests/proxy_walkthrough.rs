//! The example proxy's demo mode, as a user meets it: start it, read the walkthrough it prints,
//! run every printed `curl` command (with an HTTP client that behaves as curl does for the flags
//! used) and check every printed `#   expect:` line. Also: nothing the walkthrough handles — the
//! callers' tokens, the upstream tokens, the codes — shows up in the proxy's logs.

#[allow(dead_code)] // main.rs uses all of the example; these tests use a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, StatusCode, Uri, header};
use http_body_util::Full;
use support::{
    http::{Reply, TestClient, client_without_reuse, send},
    logs::Capture,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_printed_expectation_holds() {
    let logs = capture_logs();
    let demo = app::demo::Demo::start().await.expect("the demo starts");
    let walkthrough = demo.walkthrough.clone();
    tokio::spawn(
        async move { axum::serve(demo.listener, tower::make::Shared::new(demo.proxy)).await },
    );

    let script = Script::parse(&walkthrough);
    assert!(
        script.steps.len() >= 6,
        "the walkthrough shows 401, 200, a refresh, 403 scope, 403 after revocation and re-linking:\n{walkthrough}"
    );
    let client = client_without_reuse();
    for step in &script.steps {
        let response = step.command.run(&client).await;
        for expectation in &step.expect {
            expectation.check(&response, &step.line);
        }
    }

    let logs = logs.text();
    assert!(
        logs.contains("answered"),
        "the access log is captured: {logs}"
    );
    for secret in script.variables.values() {
        assert!(
            !logs.contains(secret.as_str()),
            "a caller's token was logged"
        );
    }
    for fragment in ["eyJ", "demo-at-", "demo-rt-", "code=", "state="] {
        assert!(
            !logs.contains(fragment),
            "`{fragment}` in the logs:\n{logs}"
        );
    }
}

/// The printed walkthrough, parsed: shell variables, then commands with their expectations.
struct Script {
    variables: BTreeMap<String, String>,
    steps: Vec<Step>,
}

struct Step {
    line: String,
    command: Curl,
    expect: Vec<Expect>,
}

impl Script {
    fn parse(text: &str) -> Self {
        let mut variables = BTreeMap::new();
        let mut steps: Vec<Step> = Vec::new();
        for line in text.lines() {
            if let Some((name, value)) = line.split_once("='")
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            {
                let value = value.strip_suffix('\'').expect("a quoted value");
                variables.insert(name.to_owned(), value.to_owned());
            } else if line.starts_with("curl ") {
                steps.push(Step {
                    line: line.to_owned(),
                    command: Curl::parse(line, &variables),
                    expect: Vec::new(),
                });
            } else if let Some(expectation) = line.strip_prefix("#   expect: ") {
                let step = steps.last_mut().expect("an expectation follows a command");
                step.expect.push(Expect::parse(expectation));
            }
        }
        for step in &steps {
            assert!(
                matches!(step.expect.first(), Some(Expect::Status(_))),
                "every command states its status: {}",
                step.line
            );
        }
        Script { variables, steps }
    }
}

/// The part of curl the walkthrough uses: `-s`, `-i`, `-L` (follow redirects), `-b ''` (the
/// cookie engine), `-X METHOD`, `-H 'Name: value'`, one URL.
struct Curl {
    method: Method,
    headers: Vec<(String, String)>,
    follow: bool,
    cookies: bool,
    url: String,
}

impl Curl {
    fn parse(line: &str, variables: &BTreeMap<String, String>) -> Self {
        let words = shell_words(line, variables);
        assert_eq!(words[0], "curl");
        let mut curl = Curl {
            method: Method::GET,
            headers: Vec::new(),
            follow: false,
            cookies: false,
            url: String::new(),
        };
        let mut words = words.into_iter().skip(1);
        while let Some(word) = words.next() {
            match word.as_str() {
                "-X" => curl.method = words.next().unwrap().parse().unwrap(),
                "-H" => {
                    let header = words.next().unwrap();
                    let (name, value) = header.split_once(": ").expect("Name: value");
                    curl.headers.push((name.to_owned(), value.to_owned()));
                }
                "-b" => {
                    assert_eq!(words.next().unwrap(), "", "only `-b ''` is understood");
                    curl.cookies = true;
                }
                flags if flags.starts_with('-') => {
                    for flag in flags[1..].chars() {
                        match flag {
                            's' | 'i' => {}
                            'L' => curl.follow = true,
                            other => panic!("unexpected curl flag -{other} in {line}"),
                        }
                    }
                }
                url => {
                    assert!(curl.url.is_empty(), "one URL: {line}");
                    curl.url = url.to_owned();
                }
            }
        }
        curl
    }

    /// Sends the request as curl would, following redirects with `-L`: headers given with `-H`
    /// only to the first host and port, cookies by path, `303` as a `GET`.
    async fn run(&self, client: &TestClient) -> Reply {
        let first: Uri = self.url.parse().unwrap();
        let mut url = first.clone();
        let mut method = self.method.clone();
        let mut jar: BTreeMap<String, (String, String)> = BTreeMap::new();
        for _ in 0..10 {
            let mut request = http::Request::builder()
                .method(method.clone())
                .uri(url.clone());
            if url.authority() == first.authority() {
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
            }
            let cookies: Vec<String> = jar
                .iter()
                .filter(|(_, (path, _))| url.path().starts_with(path.as_str()))
                .map(|(name, (_, value))| format!("{name}={value}"))
                .collect();
            if !cookies.is_empty() {
                request = request.header(header::COOKIE, cookies.join("; "));
            }
            let response = send(client, request.body(Full::new(Bytes::new())).unwrap()).await;
            if self.cookies {
                for set in response.headers.get_all(header::SET_COOKIE) {
                    store_cookie(&mut jar, set.to_str().unwrap());
                }
            }
            match response.location() {
                Some(location) if self.follow && response.status.is_redirection() => {
                    url = resolve(&url, location);
                    if response.status == StatusCode::SEE_OTHER {
                        method = Method::GET;
                    }
                }
                _ => return response,
            }
        }
        panic!("too many redirects from {}", self.url);
    }
}

fn store_cookie(jar: &mut BTreeMap<String, (String, String)>, set_cookie: &str) {
    let mut attributes = set_cookie.split(';').map(str::trim);
    let (name, value) = attributes.next().unwrap().split_once('=').unwrap();
    let mut path = "/".to_owned();
    let mut expired = false;
    for attribute in attributes {
        if let Some(p) = attribute.strip_prefix("Path=") {
            path = p.to_owned();
        }
        expired |= attribute == "Max-Age=0";
    }
    if expired {
        jar.remove(name);
    } else {
        jar.insert(name.to_owned(), (path, value.to_owned()));
    }
}

fn resolve(base: &Uri, location: &str) -> Uri {
    if location.starts_with('/') {
        format!(
            "{}://{}{location}",
            base.scheme_str().unwrap(),
            base.authority().unwrap()
        )
        .parse()
        .unwrap()
    } else {
        location.parse().unwrap()
    }
}

/// Splits a command line as a POSIX shell would for what the walkthrough prints: single quotes
/// literal, double quotes and bare words with `$VAR` expanded.
fn shell_words(line: &str, variables: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if !(c.is_ascii_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            chars.next();
        }
        variables
            .get(&name)
            .unwrap_or_else(|| panic!("${name} is not defined by the walkthrough"))
            .clone()
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '$' => {
                            let value = expand(&mut chars);
                            word.as_mut().unwrap().push_str(&value);
                        }
                        c => word.as_mut().unwrap().push(c),
                    }
                }
            }
            '$' => {
                let value = expand(&mut chars);
                word.get_or_insert_with(String::new).push_str(&value);
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

enum Expect {
    Status(u16),
    Header(String, String),
    NoHeader(String),
    Body(String),
}

impl Expect {
    fn parse(text: &str) -> Self {
        if let Ok(status) = text.parse() {
            Expect::Status(status)
        } else if let Some(fragment) = text.strip_prefix("body: ") {
            Expect::Body(fragment.to_owned())
        } else if let Some(name) = text.strip_prefix("no ") {
            Expect::NoHeader(name.to_owned())
        } else {
            let (name, value) = text.split_once(": ").expect("name: value");
            Expect::Header(name.to_owned(), value.to_owned())
        }
    }

    fn check(&self, response: &Reply, command: &str) {
        let body = String::from_utf8_lossy(&response.body);
        let context = || {
            format!(
                "{command}\n→ {} {:?}\n{body}",
                response.status, response.headers
            )
        };
        match self {
            Expect::Status(status) => {
                assert_eq!(response.status.as_u16(), *status, "{}", context());
            }
            Expect::Header(name, value) => {
                assert_eq!(
                    response.header(name.as_str()),
                    Some(value.as_str()),
                    "{}",
                    context()
                );
            }
            Expect::NoHeader(name) => {
                assert!(response.header(name.as_str()).is_none(), "{}", context());
            }
            Expect::Body(fragment) => {
                assert!(body.contains(fragment.as_str()), "{}", context());
            }
        }
    }
}

/// Routes every log line, at every level, into a buffer.
fn capture_logs() -> Capture {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    capture
}
