//! The response future of [`RefreshAndRetry`](super::RefreshAndRetry): one request's way from
//! loading its link to the provider's answer.
//!
//! # States
//!
//! Each state owns what the steps after it need (the key, the token, the request head and
//! body); a state is left by moving its data into the next one.
//!
//! ```text
//! new ─┬─ no LinkKey ───────────────► Passthrough ──► the response, untouched
//!      ├─ another provider's LinkKey ► Failed ──────► Misconfigured
//!      └─ LinkKey ─► Load ─┬─ no link, marked, store down ─► Failed
//!                          ├─ body not read yet ─► Buffer ─┐
//!                          └───────────────────────────────┴─► (ready)
//! (ready) ─┬─ expires within the skew (U3) ─► Refresh(Proactive)
//!          └─────────────────────────────────► Attempt
//! Refresh(Proactive) ─ new token, or failed for a passing reason with the old one still
//!                      valid ─► Attempt; otherwise ─► Failed
//! Attempt ─┬─ token rejected (U2), not refreshed for this request ─► Refresh(Rejected)
//!          ├─ token rejected, fresh from a refresh (U4) ─► Mark ─► ReauthRequired
//!          └─ anything else ─► the response passed on (U1, U6), or an error (U5, U9)
//! Refresh(Rejected) ─┬─ new token, body kept ─► Attempt (again, the last one)
//!                    ├─ new token, body not kept ─► Failed(BodyNotReplayable)
//!                    └─ failed ─► Failed (U4, U7, U8, S1)
//! ```
//!
//! The first attempt and the retry are one state, [`State::Attempt`]; what a rejection of it
//! leads to is in its [`OnReject`]. A completed future is left in [`State::Done`], and polling it
//! again panics.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::SystemTime,
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Request, Response, StatusCode,
    header::{AUTHORIZATION, WWW_AUTHENTICATE},
    request::Parts,
};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use super::{
    NoReplay, Shared,
    flight::{self, BoxFuture, Outcome, RefreshFailure},
};
use crate::{
    emit::PROXY_STATUS,
    upstream::{
        body::{Buffered, Buffering, RetryBody},
        classify::{UpstreamClass, classify_challenges},
        error::{NotReplayable, ReauthReason, UpstreamError},
        grant::{BoxError, Refresher},
        store::{LinkKey, TokenSecret, TokenStore, UpstreamToken},
        strip_hop_by_hop,
    },
};

pin_project! {
    /// Response future of [`RefreshAndRetry`](super::RefreshAndRetry).
    pub struct ResponseFuture<S, St, R, B>
    where
        S: Service<Request<RetryBody<B>>>,
        St: TokenStore,
    {
        #[pin]
        state: State<S::Future, Oneshot<S, Request<RetryBody<B>>>, St::Load, B>,
        service: S,
        shared: Arc<Shared<St, R>>,
    }
}

pin_project! {
    /// `F`: the inner service's future; `O`: the same for a retry; `L`: the store's load.
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<F, O, L, B> {
        // No `LinkKey`: not ours.
        Passthrough { #[pin] future: F },
        // Loading the link, reading the body meanwhile.
        Load { #[pin] load: L, key: LinkKey, head: Parts, body: BodyState<B> },
        // Link loaded; reading the rest of the body.
        Buffer { key: LinkKey, token: UpstreamToken, head: Parts, buffering: Buffering<B> },
        // Refreshing, ahead of expiry or after a rejection.
        Refresh { future: BoxFuture<Outcome>, key: LinkKey, trigger: Trigger<B> },
        // An attempt (the first, or the retry) waiting for the provider's answer.
        Attempt {
            #[pin] future: Sending<F, O>,
            key: LinkKey,
            // The access token it carries.
            access: TokenSecret,
            on_reject: OnReject,
        },
        // Marking the link as needing re-authorization, then failing with `error`.
        Mark { future: BoxFuture<()>, error: UpstreamError },
        Failed { error: UpstreamError },
        Done,
    }
}

pin_project! {
    /// The future of one attempt.
    #[project = SendingProj]
    enum Sending<F, O> {
        // Through the service `poll_ready` drove to readiness.
        First { #[pin] future: F },
        // Through a clone of it, made ready by `Oneshot`.
        Again { #[pin] future: O },
    }
}

impl<F, O, T, E> Future for Sending<F, O>
where
    F: Future<Output = Result<T, E>>,
    O: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SendingProj::First { future } => future.poll(cx),
            SendingProj::Again { future } => future.poll(cx),
        }
    }
}

/// Why a refresh runs, and what it needs to go on.
enum Trigger<B> {
    /// The token expires within the skew (row U3); `request` is yet to be sent. If the refresh
    /// fails for a passing reason, `token` is used while it is valid.
    Proactive {
        token: UpstreamToken,
        request: Outgoing<B>,
    },
    /// The provider rejected the token with `status` (row U2).
    Rejected { status: StatusCode, replay: Replay },
}

/// What a rejection of an attempt leads to.
#[allow(
    clippy::large_enum_variant,
    reason = "it lives in the future's state either way; boxing would cost an allocation per request"
)]
enum OnReject {
    /// A refresh, then `replay` sent again (if the body was kept).
    Refresh(Replay),
    /// Nothing more: the attempt's token came from a refresh for this request, so the
    /// rejection is final (row U4) — never a second refresh.
    Final,
}

/// The request to send again after a refresh, or why it cannot be.
type Replay = Result<Resend, NotReplayable>;

/// A request whose body was kept whole.
struct Resend {
    head: Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

/// A request ready for its first attempt.
struct Outgoing<B> {
    head: Parts,
    body: ReadBody<B>,
}

/// The request body, while it is read before the first attempt.
enum BodyState<B> {
    Reading(Buffering<B>),
    Read(Result<ReadBody<B>, BoxError>),
}

/// The request body, read as far as it is before the first attempt.
enum ReadBody<B> {
    /// All of it, within the replay limit: it can be sent again.
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Longer than the replay limit: what was read, then the rest.
    TooLarge { prefix: Bytes, rest: B },
    /// The request carries `NoReplay`: sent as it streams, never buffered.
    Streamed { rest: B },
}

impl<B> BodyState<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads on while the store answers.
    fn poll_read(&mut self, cx: &mut Context<'_>) {
        if let Self::Reading(buffering) = self
            && let Poll::Ready(read) = buffering.poll_buffer(cx)
        {
            *self = Self::Read(read_body(read));
        }
    }
}

fn read_body<B>(read: Result<Buffered<B>, B::Error>) -> Result<ReadBody<B>, BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match read {
        Ok(Buffered::Whole { data, trailers }) => Ok(ReadBody::Whole { data, trailers }),
        Ok(Buffered::TooLarge { prefix, rest }) => Ok(ReadBody::TooLarge { prefix, rest }),
        Err(error) => Err(error.into()),
    }
}

impl<S, St, R, B> ResponseFuture<S, St, R, B>
where
    S: Service<Request<RetryBody<B>>>,
    St: TokenStore,
    B: Body + Unpin,
{
    pub(super) fn new(mut service: S, shared: Arc<Shared<St, R>>, request: Request<B>) -> Self {
        let state = match request.extensions().get::<LinkKey>().cloned() {
            None => State::Passthrough {
                future: service.call(request.map(|body| RetryBody::chained(Bytes::new(), body))),
            },
            Some(key) if !shared.owns(&key) => {
                tracing::error!(
                    layer = &*shared.provider,
                    request = key.provider(),
                    "the request's LinkKey names another provider than this layer's"
                );
                State::Failed {
                    error: UpstreamError::Misconfigured {
                        provider: Arc::from(key.provider()),
                        source: None,
                    },
                }
            }
            Some(key) => {
                let (head, body) = request.into_parts();
                let body = if head.extensions.get::<NoReplay>().is_some() {
                    BodyState::Read(Ok(ReadBody::Streamed { rest: body }))
                } else if body.is_end_stream() {
                    BodyState::Read(Ok(ReadBody::Whole {
                        data: Bytes::new(),
                        trailers: None,
                    }))
                } else {
                    BodyState::Reading(Buffering::new(body, shared.replay_limit))
                };
                State::Load {
                    load: shared.store.load(&key),
                    key,
                    head,
                    body,
                }
            }
        };
        Self {
            state,
            service,
            shared,
        }
    }
}

impl<S, St, R, B, ResBody> Future for ResponseFuture<S, St, R, B>
where
    S: Service<Request<RetryBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    St: TokenStore,
    R: Refresher,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &*this.shared;
        loop {
            // Each arm drives its state's future; once it is ready, the state's data is moved
            // out (leaving `Done`) into the next state.
            let next = match this.state.as_mut().project() {
                StateProj::Passthrough { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(
                        result.map_err(|e| transport_error(&shared.provider, e.into())),
                    );
                }
                StateProj::Load { load, body, .. } => {
                    body.poll_read(cx);
                    let loaded = ready!(load.poll(cx));
                    let StateOwned::Load {
                        key, head, body, ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Load")
                    };
                    link_loaded(this.service, shared, key, head, body, loaded)
                }
                StateProj::Buffer { buffering, .. } => {
                    let body = read_body(ready!(buffering.poll_buffer(cx)));
                    let StateOwned::Buffer {
                        key, token, head, ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Buffer")
                    };
                    ready_to_send(this.service, shared, key, token, head, body)
                }
                StateProj::Refresh { future, .. } => {
                    let outcome = ready!(future.as_mut().poll(cx));
                    let StateOwned::Refresh { key, trigger, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Refresh")
                    };
                    refreshed(this.service, shared, key, trigger, outcome)
                }
                StateProj::Attempt { future, .. } => {
                    let answer = ready!(future.poll(cx));
                    let StateOwned::Attempt {
                        key,
                        access,
                        on_reject,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Attempt")
                    };
                    let response =
                        answer.map_err(|e| transport_error(&shared.provider, e.into()))?;
                    match shared.classify(response) {
                        Classified::Done(result) => return Poll::Ready(result),
                        Classified::Rejected(status) => {
                            rejected(shared, key, access, on_reject, status)
                        }
                    }
                }
                StateProj::Mark { future, .. } => {
                    ready!(future.as_mut().poll(cx));
                    let StateOwned::Mark { error, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Mark")
                    };
                    return Poll::Ready(Err(error));
                }
                StateProj::Failed { .. } => {
                    let StateOwned::Failed { error } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Failed")
                    };
                    return Poll::Ready(Err(error));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            this.state.set(next);
        }
    }
}

type StateOf<S, L, B> =
    State<<S as Service<Request<RetryBody<B>>>>::Future, Oneshot<S, Request<RetryBody<B>>>, L, B>;

/// The store answered (state `Load`).
fn link_loaded<S, St, R, B>(
    service: &mut S,
    shared: &Arc<Shared<St, R>>,
    key: LinkKey,
    head: Parts,
    body: BodyState<B>,
    loaded: Result<Option<UpstreamToken>, St::Error>,
) -> StateOf<S, St::Load, B>
where
    S: Service<Request<RetryBody<B>>>,
    St: TokenStore,
    R: Refresher,
{
    let stored = match loaded {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return State::Failed {
                error: shared.reauth(ReauthReason::NotConnected, None),
            };
        }
        Err(error) => {
            return State::Failed {
                error: UpstreamError::StoreUnavailable {
                    provider: shared.provider.clone(),
                    source: Arc::new(error),
                },
            };
        }
    };
    // A refreshed link the store did not take replaces the record it was refreshed from.
    let token = shared.flights.newer_than(&key, &stored).unwrap_or(stored);
    if token.needs_reauthorization() {
        return State::Failed {
            error: shared.reauth(ReauthReason::Marked, None),
        };
    }
    match body {
        BodyState::Reading(buffering) => State::Buffer {
            key,
            token,
            head,
            buffering,
        },
        BodyState::Read(body) => ready_to_send(service, shared, key, token, head, body),
    }
}

/// The link is loaded and the body read: refresh ahead of expiry (row U3), or send.
fn ready_to_send<S, St, R, L, B>(
    service: &mut S,
    shared: &Arc<Shared<St, R>>,
    key: LinkKey,
    token: UpstreamToken,
    head: Parts,
    body: Result<ReadBody<B>, BoxError>,
) -> StateOf<S, L, B>
where
    S: Service<Request<RetryBody<B>>>,
    St: TokenStore,
    R: Refresher,
{
    let body = match body {
        Ok(body) => body,
        Err(source) => {
            return State::Failed {
                error: UpstreamError::RequestBody {
                    provider: shared.provider.clone(),
                    source,
                },
            };
        }
    };
    let request = Outgoing { head, body };
    let due = token.refresh_token().is_some()
        && token.refresh_due(shared.skew, SystemTime::now())
        && !shared.flights.cooling(&key);
    if due {
        State::Refresh {
            future: flight::refresh(shared.clone(), key.clone(), token.access_token().clone()),
            key,
            trigger: Trigger::Proactive { token, request },
        }
    } else {
        first_attempt(service, shared, key, &token, request, false)
    }
}

/// Sends `request` for the first time, with `token`; `refreshed`: the token comes from a
/// refresh for this very request.
fn first_attempt<S, St, R, L, B>(
    service: &mut S,
    shared: &Shared<St, R>,
    key: LinkKey,
    token: &UpstreamToken,
    request: Outgoing<B>,
    refreshed: bool,
) -> StateOf<S, L, B>
where
    S: Service<Request<RetryBody<B>>>,
{
    let Outgoing { head, body } = request;
    let (request, replay) = match body {
        ReadBody::Whole { data, trailers } => (
            Request::from_parts(
                head.clone(),
                RetryBody::buffered(data.clone(), trailers.clone()),
            ),
            Ok(Resend {
                head,
                data,
                trailers,
            }),
        ),
        ReadBody::TooLarge { prefix, rest } => (
            Request::from_parts(head, RetryBody::chained(prefix, rest)),
            Err(NotReplayable::TooLarge {
                limit: shared.replay_limit,
            }),
        ),
        ReadBody::Streamed { rest } => (
            Request::from_parts(head, RetryBody::chained(Bytes::new(), rest)),
            Err(NotReplayable::Streamed),
        ),
    };
    let on_reject = if refreshed {
        OnReject::Final
    } else {
        OnReject::Refresh(replay)
    };
    attempt(shared, key, token, request, on_reject, |request| {
        Sending::First {
            future: service.call(request),
        }
    })
}

/// A refresh ended (state `Refresh`).
fn refreshed<S, St, R, L, B>(
    service: &mut S,
    shared: &Shared<St, R>,
    key: LinkKey,
    trigger: Trigger<B>,
    outcome: Outcome,
) -> StateOf<S, L, B>
where
    S: Service<Request<RetryBody<B>>> + Clone,
{
    match trigger {
        Trigger::Proactive { token, request } => match outcome {
            Ok(fresh) => first_attempt(service, shared, key, &fresh, request, true),
            Err(failure) if failure.is_passing() && !token.is_expired(SystemTime::now()) => {
                // Still valid: use it, and don't ask again for a while.
                tracing::warn!(
                    provider = key.provider(),
                    "refresh ahead of expiry failed; using the current token"
                );
                shared.flights.cool_down(&key, shared.retry_after);
                first_attempt(service, shared, key, &token, request, false)
            }
            Err(failure) => State::Failed {
                error: shared.failure(failure, None),
            },
        },
        Trigger::Rejected { status, replay } => match (outcome, replay) {
            (Err(failure), _) => State::Failed {
                error: shared.failure(failure, Some(status)),
            },
            (Ok(fresh), Ok(resend)) => {
                let request = Request::from_parts(
                    resend.head,
                    RetryBody::buffered(resend.data, resend.trailers),
                );
                let service = service.clone();
                attempt(shared, key, &fresh, request, OnReject::Final, |request| {
                    Sending::Again {
                        future: Oneshot::new(service, request),
                    }
                })
            }
            (Ok(_), Err(reason)) => State::Failed {
                error: UpstreamError::BodyNotReplayable {
                    provider: shared.provider.clone(),
                    reason,
                    received_status: status,
                },
            },
        },
    }
}

/// The provider rejected the token of an attempt with `status` (row U2).
fn rejected<F, O, L, B, St, R>(
    shared: &Arc<Shared<St, R>>,
    key: LinkKey,
    access: TokenSecret,
    on_reject: OnReject,
    status: StatusCode,
) -> State<F, O, L, B>
where
    St: TokenStore,
    R: Refresher,
{
    match on_reject {
        OnReject::Refresh(replay) => {
            tracing::debug!(provider = key.provider(), %status, "token rejected; refreshing");
            State::Refresh {
                future: flight::refresh(shared.clone(), key.clone(), access),
                key,
                trigger: Trigger::Rejected { status, replay },
            }
        }
        OnReject::Final => {
            // Fresh from a refresh and rejected too (row U4).
            tracing::warn!(provider = key.provider(), %status, "a fresh token was rejected; the link needs re-authorization");
            State::Mark {
                future: flight::mark_rejected(shared.clone(), key, access),
                error: shared.reauth(ReauthReason::RejectedAfterRefresh, Some(status)),
            }
        }
    }
}

/// Sends an attempt (the first or the retry) with `token`.
fn attempt<F, O, L, B, St, R>(
    shared: &Shared<St, R>,
    key: LinkKey,
    token: &UpstreamToken,
    mut request: Request<RetryBody<B>>,
    on_reject: OnReject,
    send: impl FnOnce(Request<RetryBody<B>>) -> Sending<F, O>,
) -> State<F, O, L, B> {
    match authorize(&mut request, token, shared) {
        Ok(()) => State::Attempt {
            future: send(request),
            key,
            access: token.access_token().clone(),
            on_reject,
        },
        Err(error) => State::Failed { error },
    }
}

/// Sets `Authorization: Bearer <token>`, replacing whatever the request had.
fn authorize<B, St, R>(
    request: &mut Request<B>,
    token: &UpstreamToken,
    shared: &Shared<St, R>,
) -> Result<(), UpstreamError> {
    let value = format!("Bearer {}", token.access_token().expose_secret());
    match HeaderValue::from_maybe_shared(Bytes::from(value)) {
        Ok(mut value) => {
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
            Ok(())
        }
        // The provider issued a token that cannot be sent in a header.
        Err(_) => Err(UpstreamError::Misconfigured {
            provider: shared.provider.clone(),
            source: None,
        }),
    }
}

enum Classified<B> {
    Done(Result<Response<B>, UpstreamError>),
    Rejected(StatusCode),
}

impl<St, R> Shared<St, R> {
    fn reauth(&self, reason: ReauthReason, received_status: Option<StatusCode>) -> UpstreamError {
        UpstreamError::ReauthRequired {
            provider: self.provider.clone(),
            reason,
            received_status,
            connect_url: self.connect_url.clone(),
        }
    }

    /// The error for a failed refresh; `rejected` is the status of the provider's rejection
    /// that triggered it, if one did.
    fn failure(&self, failure: RefreshFailure, rejected: Option<StatusCode>) -> UpstreamError {
        match failure {
            RefreshFailure::NotConnected => self.reauth(ReauthReason::NotConnected, None),
            RefreshFailure::Marked => self.reauth(ReauthReason::Marked, None),
            RefreshFailure::NoRefreshToken => self.reauth(ReauthReason::NoRefreshToken, rejected),
            RefreshFailure::Grant(error) if error.needs_reauthorization() => {
                self.reauth(ReauthReason::InvalidGrant, None)
            }
            RefreshFailure::Grant(error) if error.is_misconfiguration() => {
                UpstreamError::Misconfigured {
                    provider: self.provider.clone(),
                    source: Some(error),
                }
            }
            RefreshFailure::Grant(error) => UpstreamError::RefreshUnavailable {
                provider: self.provider.clone(),
                retry_after: error.retry_after().unwrap_or(self.retry_after),
                source: Some(error),
            },
            RefreshFailure::Store(source) => UpstreamError::StoreUnavailable {
                provider: self.provider.clone(),
                source,
            },
            RefreshFailure::TimedOut | RefreshFailure::Aborted => {
                UpstreamError::RefreshUnavailable {
                    provider: self.provider.clone(),
                    retry_after: self.retry_after,
                    source: None,
                }
            }
        }
    }

    /// What a provider's response means: its token was rejected (row U2), or the request is
    /// done — passed on (rows U1, U6) or failed (row U5).
    fn classify<B>(&self, mut response: Response<B>) -> Classified<B> {
        let class = match response.extensions().get::<UpstreamClass>() {
            Some(class) => class.clone(),
            None => classify_challenges(response.status(), response.headers()),
        };
        match class {
            UpstreamClass::TokenRejected => Classified::Rejected(response.status()),
            UpstreamClass::InsufficientScope { scopes } => {
                Classified::Done(Err(UpstreamError::InsufficientScope {
                    provider: self.provider.clone(),
                    scopes,
                }))
            }
            UpstreamClass::Forbidden => {
                rewrite_passed_on(&mut response, Some(&self.forbidden_status));
                Classified::Done(Ok(response))
            }
            _ => {
                rewrite_passed_on(&mut response, None);
                Classified::Done(Ok(response))
            }
        }
    }
}

/// A provider's response as it is passed on to the caller (rows U1, U6): without hop-by-hop
/// headers, and without the provider's `WWW-Authenticate` (its challenges name credentials the
/// caller does not hold, and could pass for ours). A plain `403` also says who answered:
/// `forbidden_status` is its `Proxy-Status` (`<proxy>; received-status=403`).
fn rewrite_passed_on<B>(response: &mut Response<B>, forbidden_status: Option<&HeaderValue>) {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    headers.remove(WWW_AUTHENTICATE);
    if let Some(status) = forbidden_status {
        headers.append(PROXY_STATUS, status.clone());
    }
}

/// A client error as row U9 failure: a timeout (by type or, failing that, by message) or not.
pub(crate) fn transport_error(provider: &Arc<str>, error: BoxError) -> UpstreamError {
    let provider = provider.clone();
    if is_timeout(&*error) {
        UpstreamError::TimedOut {
            provider,
            source: error,
        }
    } else {
        UpstreamError::Unreachable {
            provider,
            source: error,
        }
    }
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
            || error.is::<tokio::time::error::Elapsed>()
        {
            return true;
        }
        let message = error.to_string().to_ascii_lowercase();
        if message.contains("timed out") || message.contains("timeout") {
            return true;
        }
        next = error.source();
    }
    false
}
