//! The example proxy's whole stack, and the crate's layers alone, against a bare hyper
//! forwarding proxy, all in front of a provider that answers at once: what each costs per
//! request, in throughput and in instructions.
//!
//! ```sh
//! # criterion (time per request), then interleaved wrk rounds: the throughput ratio
//! cargo bench --bench forward --features axum -- --warm-up-time 1 --measurement-time 4
//! # instructions per request of each proxy process, under callgrind
//! cargo bench --bench forward --features axum -- --instructions
//! ```
//!
//! The first needs `wrk` on the `PATH` for its last part (`apt-get install wrk`), the second
//! valgrind. Each server is this binary run again in a process of its own (`--serve ROLE`), on a
//! multi-threaded runtime with a worker per core, as `#[tokio::main]` builds:
//!
//! - `provider`: answers `GET /v1/me` at once with a small JSON document when it carries the
//!   user's upstream token (`401` otherwise).
//! - `bare`: hyper's HTTP/1 server; each request is copied to the provider
//!   (`/api/bench/{rest}` → `{provider}/v1/{rest}`, `Host` dropped, `Authorization` set to the
//!   fixed upstream token) with the example's own client (`examples/proxy/http_client.rs`),
//!   and the answer streamed back. Nothing else.
//! - `stack`: the example proxy as its `main.rs` serves it (`app::build`, `app::serve::serve`):
//!   request id and access-log span (no tracing subscriber is installed: nothing is written),
//!   the caller's JWT validated (verified-token cache on), scope rule, link lookup in a
//!   `MemoryStore`, the forwarder (body read, request rebuilt), `RefreshAndRetry` +
//!   `ClassifyUpstream` + the per-attempt timeout, the same client.
//! - `layers`: the bare proxy with the crate's layers and nothing of the example's own: the
//!   caller's JWT validated (the same validator and cache, against the demo's identity provider
//!   in its own process), the user's link looked up in a `MemoryStore` and its token set
//!   (`RefreshAndRetry`), the answer classified (`ClassifyUpstream`), failures rendered by the
//!   same emitter. No request id, router, scope rule, timers or request rebuilding: the
//!   difference to `bare` is the crate's cost, the rest of `stack`'s is the example's.
//!
//! Every proxy gets the same requests: `GET /api/bench/me` with a caller's JWT (`layers` mints
//! its own), over [`CONNECTIONS`] keep-alive connections; the bare proxy ignores the JWT.
//!
//! - criterion's `forward/bare`, `forward/layers` and `forward/stack` send them from this
//!   process (hyper-util's client, [`CONNECTIONS`] requests in flight) and report the time per
//!   request.
//! - The wrk part alternates rounds of [`ROUND`] on each proxy (`wrk -t1 -c16`), bare first,
//!   [`ROUNDS`] of each after one warm-up round of each, and prints the medians of the
//!   requests per second and their ratios to bare.
//! - `--instructions` runs each proxy under `valgrind --tool=callgrind` (the provider and the
//!   client run natively), sends [`WARM_UP`] requests, zeroes the counters
//!   (`callgrind_control -z PID`), sends [`MEASURED`] requests, dumps the counters
//!   (`callgrind_control -d PID`) and divides. Counted: every instruction the proxy process
//!   executes in user space between the two, in all its threads — accepting, parsing, the
//!   proxy's work, the client's call to the provider, writing the answer, the runtime's
//!   scheduling; nothing is subtracted. The dumps are kept for `callgrind_annotate` (the path
//!   is printed); valgrind 3.19's counts the cost of calls made before the zeroing (`calls=0`
//!   lines) as the caller's own, so rewrite those first: `sed 's/^calls=0 /calls=1 /'`.

mod example_proxy;

use std::{
    convert::Infallible,
    env,
    fmt::Write as _,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use example_proxy::{
    PROVIDER, Target, UPSTREAM_TOKEN, USER,
    app::{self, demo::idp::Idp, http_client::HttpsClient, serve::ServeLimits},
    load, load_client,
};
use http::{
    HeaderValue, Request, StatusCode,
    header::{AUTHORIZATION, HOST},
};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{net::TcpListener, runtime::Runtime};
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};
use tower_bearer::{
    emit::{Emitter, pending_response},
    failure::AuthError,
    http_client::HttpClient,
    upstream::{
        classify::ClassifyUpstreamLayer,
        grant::{GrantError, refresher_fn},
        refresh::{RefreshAndRetryLayer, RetryBody},
        store::{Link, LinkKey, MemoryStore},
    },
    validate::{CachedValidator, ClaimsPolicy, JwksValidator, StandardClaims, ValidateBearerLayer},
};

/// Keep-alive connections from the load generator; as many requests in flight.
const CONNECTIONS: usize = 16;
/// One wrk round.
const ROUND: Duration = Duration::from_secs(4);
/// wrk rounds per proxy, after a warm-up round of each.
const ROUNDS: usize = 12;
/// Requests before the instruction counters are zeroed.
const WARM_UP: u64 = 2_000;
/// Requests counted.
const MEASURED: u64 = 10_000;

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => return serve(&args[1..]),
        Some("--instructions") => return instructions(),
        _ => {}
    }
    let provider = Server::start(this(&["--serve", "provider"]), None);
    let stack = Server::start(this(&["--serve", "stack", &provider.url]), None);
    let layers = Server::start(this(&["--serve", "layers", &provider.url]), None);
    let bare = Server::start(this(&["--serve", "bare", &provider.url]), None);
    let authorization = stack.caller_authorization();
    let targets = [
        ("bare", bare.target(&authorization)),
        ("layers", layers.target(&layers.caller_authorization())),
        ("stack", stack.target(&authorization)),
    ];

    let runtime = runtime();
    let client = load_client(CONNECTIONS);
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    for (name, target) in &targets {
        group.bench_function(*name, |b| {
            b.iter_custom(|requests| runtime.block_on(load(&client, target, CONNECTIONS, requests)))
        });
    }
    group.finish();
    criterion.final_summary();
    // `cargo test --benches` runs each benchmark once to check it; the rounds need a real run.
    if !args.iter().any(|arg| arg == "--test") {
        wrk_rounds(&targets);
    }
}

/// A multi-threaded runtime with a worker per core, as `#[tokio::main]` builds.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// This binary with `args`.
fn this(args: &[&str]) -> Command {
    let mut command = Command::new(env::current_exe().unwrap());
    command.args(args);
    command
}

/// A server process: this binary with `--serve`, maybe under valgrind.
struct Server {
    child: Child,
    url: String,
    /// The `Authorization` of the caller's requests, from the example proxy.
    authorization: Option<String>,
}

impl Server {
    /// Starts `command` and reads the line it prints when it listens; its stderr goes to
    /// `log`, if given.
    fn start(mut command: Command, log: Option<&Path>) -> Self {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some(log) = log {
            command.stderr(File::create(log).unwrap());
        }
        let mut child = command.spawn().expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace();
        let Some(url) = words.next() else {
            panic!("the server ended before listening (see its stderr)")
        };
        let url = url.to_owned();
        let authorization = words.next().map(|token| format!("Bearer {token}"));
        Self {
            child,
            url,
            authorization,
        }
    }

    /// The `Authorization` of the caller's requests, which the example proxy prints.
    fn caller_authorization(&self) -> String {
        self.authorization
            .clone()
            .expect("the example proxy names its caller's token")
    }

    /// `GET /api/bench/me` at this proxy, with `authorization`.
    fn target(&self, authorization: &str) -> Target {
        Target {
            url: format!("{}/api/{PROVIDER}/me", self.url).into(),
            authorization: authorization.into(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve ROLE [PROVIDER_URL]`: serves on a loopback port, prints its URL (and, for the
/// example proxy, its caller's token), and ends when its standard input does.
fn serve(args: &[String]) {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let provider = args.get(1).map(String::as_str).unwrap_or_default();
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        match args.first().map(String::as_str) {
            Some("provider") => {
                println!("{url}");
                let router = example_proxy::provider(Duration::ZERO);
                axum::serve(listener, router).await.unwrap();
            }
            Some("bare") => {
                println!("{url}");
                bare(listener, provider).await;
            }
            Some("layers") => layers(listener, &url, provider).await,
            Some("stack") => {
                let (proxy, authorization) = example_proxy::example_proxy(&url, provider).await;
                let token = authorization.strip_prefix("Bearer ").unwrap();
                println!("{url} {token}");
                let limits = ServeLimits::default();
                app::serve::serve(listener, proxy, limits, std::future::pending()).await;
            }
            other => panic!("--serve provider | bare URL | layers URL | stack URL, not {other:?}"),
        }
    });
}

/// The bare forwarding proxy: hyper's server, the example's client, the fixed upstream token.
async fn bare(listener: TcpListener, provider: &str) {
    let client: HttpsClient<Incoming> =
        app::http_client::https(app::config::Limits::default().upstream_timeout);
    let base: Arc<str> = format!("{provider}/v1").into();
    let mut authorization = HeaderValue::try_from(format!("Bearer {UPSTREAM_TOKEN}")).unwrap();
    authorization.set_sensitive(true);
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let (client, base, authorization) = (client.clone(), base.clone(), authorization.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
            let rest = path.strip_prefix("/api/bench").unwrap_or(path);
            parts.uri = format!("{base}{rest}").parse().unwrap();
            parts.headers.remove(HOST);
            parts.headers.insert(AUTHORIZATION, authorization.clone());
            client.request(Request::from_parts(parts, body))
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// The bare proxy with the crate's layers: validation, the user's link, classification.
async fn layers(listener: TcpListener, public_url: &str, provider: &str) {
    let idp = Idp::start().await.unwrap();
    let timeout = app::config::Limits::default().upstream_timeout;
    let discovery = HttpClient::new(app::http_client::https::<Full<Bytes>>(timeout));
    let jwks = JwksValidator::<StandardClaims>::discover(idp.issuer())
        .client(discovery)
        .policy(
            ClaimsPolicy::new()
                .audience(public_url)
                .require("sub")
                .token_type("at+jwt"),
        )
        .build_lazy()
        .unwrap();
    jwks.refresh().await.unwrap();
    let store = MemoryStore::new();
    store.insert(
        LinkKey::new(USER, PROVIDER),
        Link::new(UPSTREAM_TOKEN).with_expires_in(Duration::from_secs(24 * 3600)),
    );
    // The link's token is valid for a day: no refresh in this benchmark.
    let refresher = refresher_fn(|_| async {
        Err(GrantError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
        })
    });
    let api = ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new(PROVIDER, store, refresher))
        .layer(ClassifyUpstreamLayer::new())
        .service(app::http_client::https::<RetryBody<Incoming>>(timeout));
    let base: Arc<str> = format!("{provider}/v1").into();
    let forward = tower::service_fn(move |request: Request<Incoming>| {
        let (api, base) = (api.clone(), base.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            let Some(key) = parts
                .extensions
                .get::<Arc<StandardClaims>>()
                .and_then(|claims| claims.sub.clone())
                .map(|user| LinkKey::new(user, PROVIDER))
            else {
                return Ok::<_, Infallible>(pending_response(AuthError::MissingCredentials));
            };
            let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
            let rest = path.strip_prefix("/api/bench").unwrap_or(path);
            parts.uri = format!("{base}{rest}").parse().unwrap();
            parts.headers.remove(HOST);
            // As the example's forwarder does: the claims are not for the provider's request.
            parts.extensions.clear();
            parts.extensions.insert(key);
            Ok(match api.oneshot(Request::from_parts(parts, body)).await {
                Ok(response) => response.map(Body::new),
                Err(error) => pending_response(error),
            })
        }
    });
    let service =
        ValidateBearerLayer::new(CachedValidator::new(jwks), Emitter::new("bench")).layer(forward);
    println!("{public_url} {}", idp.token(USER, "api", public_url));
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// Alternating wrk rounds on each proxy (bare first); prints each round, the medians and their
/// ratios to bare.
fn wrk_rounds(targets: &[(&str, Target)]) {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("\nwrk not found: no throughput rounds (apt-get install wrk)");
        return;
    }
    let mut rates = vec![Vec::new(); targets.len()];
    for round in 0..=ROUNDS {
        for (rates, (_, target)) in rates.iter_mut().zip(targets) {
            let rate = wrk(target);
            // The first round of each warms up.
            if round > 0 {
                rates.push(rate);
            }
        }
    }
    println!("\nwrk -t1 -c{CONNECTIONS}, {ROUNDS} interleaved rounds of {ROUND:?} each (req/s):");
    let mut bare = None;
    for ((name, _), mut rates) in targets.iter().zip(rates) {
        let listed = rates.iter().fold(String::new(), |mut list, rate| {
            let _ = write!(list, " {rate:.0}");
            list
        });
        rates.sort_by(f64::total_cmp);
        let rate = median(&rates);
        let bare = *bare.get_or_insert(rate);
        println!(
            "  {name:<6} {rate:>8.0} median ({:.3}× bare),{listed}",
            rate / bare
        );
    }
    println!("  target for stack: ≥ 0.95× bare");
}

fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// One wrk round on `target`: its requests per second; every answer must be a `200`.
fn wrk(target: &Target) -> f64 {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{CONNECTIONS}")])
        .arg(format!("-d{}s", ROUND.as_secs()))
        .args(["-H", &format!("Authorization: {}", target.authorization)])
        .arg(&*target.url)
        .output()
        .expect("wrk runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !report.contains("Non-2xx") && !report.contains("errors"),
        "wrk failed:\n{report}"
    );
    report
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's report:\n{report}"))
}

/// `--instructions`: each proxy under callgrind, counted per request.
fn instructions() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("forward-callgrind");
    fs::create_dir_all(&out).unwrap();
    let provider = Server::start(this(&["--serve", "provider"]), None);
    let runtime = runtime();
    let client = load_client(CONNECTIONS);
    // The example proxy first: the bare one gets its caller's requests.
    let mut authorization = None;
    let mut counts = Vec::new();
    for side in ["stack", "layers", "bare"] {
        let dump = out.join(format!("{side}.out"));
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", dump.display()))
            .arg(env::current_exe().unwrap())
            .args(["--serve", side, &provider.url]);
        let server = Server::start(command, Some(&out.join(format!("{side}.log"))));
        let caller = match &server.authorization {
            Some(own) => own.clone(),
            None => authorization.clone().expect("the example proxy ran first"),
        };
        authorization.get_or_insert(caller.clone());
        let target = server.target(&caller);
        runtime.block_on(load(&client, &target, CONNECTIONS, WARM_UP));
        callgrind_control("-z", &server);
        runtime.block_on(load(&client, &target, CONNECTIONS, MEASURED));
        callgrind_control("-d", &server);
        let counted = out.join(format!("{side}.out.1"));
        let total = totals(&counted);
        println!(
            "{side:>6}: {:>9} instructions per request ({total} for {MEASURED} requests; {})",
            total / MEASURED,
            counted.display()
        );
        counts.push(total);
    }
    let bare = counts[2] as f64;
    println!(
        "stack / bare instructions: {:.3} (target ≤ 1.15); layers / bare: {:.3}",
        counts[0] as f64 / bare,
        counts[1] as f64 / bare
    );
}

/// Sends callgrind `command` (`-z`: zero, `-d`: dump) to `server`'s process.
fn callgrind_control(command: &str, server: &Server) {
    let status = Command::new("callgrind_control")
        .arg(command)
        .arg(server.child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("callgrind_control runs");
    assert!(status.success(), "callgrind_control {command} failed");
}

/// The instructions counted in a callgrind dump.
fn totals(dump: &Path) -> u64 {
    let text = fs::read_to_string(dump).unwrap_or_else(|e| panic!("{}: {e}", dump.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|total| total.trim().parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", dump.display()))
}
