//! The response future of [`RefreshAndRetry`](super::RefreshAndRetry): one request's way from
//! loading its link to the provider's answer.
//!
//! # States
//!
//! Each state owns what the steps after it need (the key, the token, the request head and
//! body); a state is left by moving its data into the next one. One thing lives beside the
//! state: what a rejection of the attempt under way leads to ([`OnReject`], with the copy of the
//! request a retry sends), written once when the attempt starts rather than moved along.
//!
//! ```text
//! new ─┬─ no LinkKey ───────────────► Passthrough ──► the response, untouched
//!      ├─ another provider's LinkKey ► Failed ──────► Misconfigured
//!      └─ LinkKey ─► Load ─┬─ no link, marked, store down ─► Failed
//!                          ├─ body not read yet ─► Buffer ─┐
//!                          └───────────────────────────────┴─► (ready)
//! (ready) ─┬─ the body failed ─► Failed(RequestBody)
//!          ├─ expires within the skew (U3) ─► Refresh(Proactive)
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
//! leads to is the future's [`OnReject`]. A completed future is left in [`State::Done`], and polling it
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
    Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri, Version,
    header::AUTHORIZATION, request::Parts,
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
    BoxError,
    emit::passed_on,
    upstream::{
        body::{Buffered, Buffering, RetryBody},
        classify::{UpstreamClass, classify_challenges},
        error::{NotReplayable, ReauthReason, UpstreamError},
        grant::Refresher,
        store::{Link, LinkKey, TokenSecret, TokenStore},
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
        // What a rejection of the attempt under way leads to, with the copy of the request a
        // retry sends. Beside the state rather than in it: written once where it stays, not
        // moved with each change of state.
        on_reject: OnReject,
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
        // Loading the link, reading the body meanwhile. `request` is taken once, as the state
        // ends: taking it moves less than replacing the whole state.
        Load { #[pin] load: L, request: Option<Loading<B>> },
        // Link loaded; reading the rest of the body.
        Buffer { key: LinkKey, token: Link, head: Parts, buffering: Buffering<B> },
        // Refreshing, ahead of expiry or after a rejection.
        Refresh { future: BoxFuture<Outcome>, key: LinkKey, trigger: Trigger<B> },
        // An attempt (the first, or the retry) waiting for the provider's answer; what a
        // rejection of it leads to is the future's `on_reject`.
        Attempt {
            #[pin] future: Sending<F, O>,
            key: LinkKey,
            // The access token it carries.
            access: TokenSecret,
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
        // Through a clone of it, made ready by `Oneshot`. Boxed: a retry is rare (it follows
        // a refresh), and the service and request it holds would make every request's future
        // larger.
        Again { future: Pin<Box<O>> },
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
            SendingProj::Again { future } => future.as_mut().poll(cx),
        }
    }
}

/// Why a refresh runs, and what it needs to go on.
enum Trigger<B> {
    /// The token expires within the skew (row U3); `request` is yet to be sent. If the refresh
    /// fails for a passing reason, `token` is used while it is valid.
    Proactive { token: Link, request: Outgoing<B> },
    /// The provider rejected the token with `status` (row U2).
    Rejected { status: StatusCode, replay: Replay },
}

/// What a rejection of an attempt leads to.
#[allow(
    clippy::large_enum_variant,
    reason = "it lives in the future either way; boxing would cost an allocation per request"
)]
enum OnReject {
    /// A refresh, then `replay` sent again (if the body was kept).
    Refresh(Replay),
    /// Nothing more: the attempt's token came from a refresh for this request, so the
    /// rejection is final (row U4) — never a second refresh. Also where a future starts and
    /// ends: no attempt, nothing kept.
    Final,
}

/// The request to send again after a refresh, or why it cannot be.
type Replay = Result<Resend, NotReplayable>;

/// A copy of a request whose body was kept whole, taken before its token was set.
struct Resend {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// `None` when the request's extensions held only its `LinkKey` (the usual case): the
    /// retry's are then made from the future's own key, equal to it, instead of a map cloned
    /// on every request for a retry that seldom comes.
    extensions: Option<Extensions>,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Resend {
    /// Copies the request `head`, `data`, `trailers`; the extensions only when they hold more
    /// than the request's `LinkKey`, which [`into_request`](Self::into_request) puts back.
    fn copy(head: &Parts, data: &Bytes, trailers: &Option<HeaderMap>) -> Self {
        Self {
            method: head.method.clone(),
            uri: head.uri.clone(),
            version: head.version,
            headers: head.headers.clone(),
            extensions: (head.extensions.len() != 1).then(|| head.extensions.clone()),
            data: data.clone(),
            trailers: trailers.clone(),
        }
    }

    /// The request again, byte for byte, with the same extensions.
    fn into_request<B>(self, key: &LinkKey) -> Request<RetryBody<B>> {
        let mut request = Request::new(RetryBody::buffered(self.data, self.trailers));
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        match self.extensions {
            Some(extensions) => *request.extensions_mut() = extensions,
            None => {
                request.extensions_mut().insert(key.clone());
            }
        }
        request
    }
}

/// A request whose link is being loaded.
struct Loading<B> {
    key: LinkKey,
    head: Parts,
    body: BodyState<B>,
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
                    request: Some(Loading { key, head, body }),
                }
            }
        };
        Self {
            state,
            on_reject: OnReject::Final,
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
            // out into the next state (or the answer returned, leaving `Done`).
            let next = match this.state.as_mut().project() {
                StateProj::Passthrough { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(
                        result.map_err(|e| transport_error(&shared.provider, e.into())),
                    );
                }
                StateProj::Load { load, request } => {
                    if let Some(request) = request {
                        request.body.poll_read(cx);
                    }
                    let loaded = ready!(load.poll(cx));
                    let Some(Loading { key, head, body }) = request.take() else {
                        unreachable!("the state Load ends once")
                    };
                    Next::new(this.service, this.on_reject, shared)
                        .link_loaded(key, head, body, loaded)
                }
                StateProj::Buffer { buffering, .. } => {
                    let body = read_body(ready!(buffering.poll_buffer(cx)));
                    let StateOwned::Buffer {
                        key, token, head, ..
                    } = this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Buffer")
                    };
                    Next::new(this.service, this.on_reject, shared)
                        .ready_to_send(key, token, head, body)
                }
                StateProj::Refresh { future, .. } => {
                    let outcome = ready!(future.as_mut().poll(cx));
                    let StateOwned::Refresh { key, trigger, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the state Refresh")
                    };
                    Next::new(this.service, this.on_reject, shared).refreshed(key, trigger, outcome)
                }
                StateProj::Attempt {
                    future,
                    key,
                    access,
                } => {
                    let mut answer = ready!(future.poll(cx))
                        .map_err(|e| transport_error(&shared.provider, e.into()));
                    let on_reject = std::mem::replace(this.on_reject, OnReject::Final);
                    // Classified in place: the response is moved once, when it is returned.
                    let classified = match &mut answer {
                        Ok(response) => shared.classify(response),
                        Err(_) => Classified::PassOn,
                    };
                    match classified {
                        // Rare (a refresh follows): the key and token are cloned, not moved
                        // out, so that the usual answer leaves the state without moving it.
                        Classified::Rejected(status) => {
                            rejected(shared, key.clone(), access.clone(), on_reject, status)
                        }
                        Classified::PassOn => {
                            this.state.set(State::Done);
                            return Poll::Ready(answer);
                        }
                        Classified::Failed(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
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

/// The parts of the future a change of state writes besides the state itself.
struct Next<'a, S, St, R> {
    service: &'a mut S,
    on_reject: &'a mut OnReject,
    shared: &'a Arc<Shared<St, R>>,
}

impl<'a, S, St, R> Next<'a, S, St, R> {
    fn new(
        service: &'a mut S,
        on_reject: &'a mut OnReject,
        shared: &'a Arc<Shared<St, R>>,
    ) -> Self {
        Self {
            service,
            on_reject,
            shared,
        }
    }
}

impl<S, St, R> Next<'_, S, St, R>
where
    St: TokenStore,
    R: Refresher,
{
    /// The store answered (state `Load`).
    fn link_loaded<B>(
        self,
        key: LinkKey,
        head: Parts,
        body: BodyState<B>,
        loaded: Result<Option<Link>, St::Error>,
    ) -> StateOf<S, St::Load, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        let shared = self.shared;
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
            BodyState::Read(body) => self.ready_to_send(key, token, head, body),
        }
    }

    /// The link is loaded and the body read: refresh ahead of expiry (row U3), or send.
    fn ready_to_send<L, B>(
        self,
        key: LinkKey,
        token: Link,
        head: Parts,
        body: Result<ReadBody<B>, BoxError>,
    ) -> StateOf<S, L, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        let shared = self.shared;
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
        let due = token.refresh_token().is_some()
            && token.refresh_due(shared.skew, SystemTime::now())
            && !shared.flights.cooling(&key);
        if due {
            State::Refresh {
                future: flight::refresh(shared.clone(), key.clone(), token.access_token().clone()),
                key,
                trigger: Trigger::Proactive {
                    token,
                    request: Outgoing { head, body },
                },
            }
        } else {
            self.first_attempt(key, token, head, body, false)
        }
    }

    /// Sends the request (`head`, `body`) for the first time, with `token`; `refreshed`: the
    /// token comes from a refresh for this very request.
    fn first_attempt<L, B>(
        self,
        key: LinkKey,
        token: Link,
        head: Parts,
        body: ReadBody<B>,
        refreshed: bool,
    ) -> StateOf<S, L, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        // A token fresh from a refresh for this request is not refreshed again: a rejection of
        // it is final, and nothing needs keeping for a retry.
        let (body, replay) = match body {
            ReadBody::Whole { data, trailers } => {
                // The inner service consumes the request: a retry needs a copy, taken before
                // the token is set. The original is sent — a copy's header map is full, and
                // setting `Authorization` would grow it.
                let resend = (!refreshed).then(|| Ok(Resend::copy(&head, &data, &trailers)));
                (RetryBody::buffered(data, trailers), resend)
            }
            ReadBody::TooLarge { prefix, rest } => (
                RetryBody::chained(prefix, rest),
                Some(Err(NotReplayable::TooLarge {
                    limit: self.shared.replay_limit,
                })),
            ),
            ReadBody::Streamed { rest } => (
                RetryBody::chained(Bytes::new(), rest),
                Some(Err(NotReplayable::Streamed)),
            ),
        };
        *self.on_reject = match replay {
            Some(replay) if !refreshed => OnReject::Refresh(replay),
            _ => OnReject::Final,
        };
        let mut request = Request::from_parts(head, body);
        match authorize(self.shared, token, &mut request) {
            // Built where it is returned: the inner future is the largest part of the state.
            Ok(access) => State::Attempt {
                future: Sending::First {
                    future: self.service.call(request),
                },
                key,
                access,
            },
            Err(error) => State::Failed { error },
        }
    }

    /// A refresh ended (state `Refresh`).
    fn refreshed<L, B>(
        self,
        key: LinkKey,
        trigger: Trigger<B>,
        outcome: Outcome,
    ) -> StateOf<S, L, B>
    where
        S: Service<Request<RetryBody<B>>> + Clone,
    {
        let shared = self.shared;
        match trigger {
            Trigger::Proactive { token, request } => match outcome {
                Ok(fresh) => self.first_attempt(key, fresh, request.head, request.body, true),
                Err(failure) if failure.is_passing() && !token.is_expired(SystemTime::now()) => {
                    // Still valid: use it, and don't ask again for a while.
                    tracing::warn!(
                        provider = key.provider(),
                        "refresh ahead of expiry failed; using the current token"
                    );
                    shared.flights.cool_down(&key, shared.retry_after);
                    self.first_attempt(key, token, request.head, request.body, false)
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
                    // The retry is the last attempt: its rejection is final.
                    *self.on_reject = OnReject::Final;
                    let mut request = resend.into_request(&key);
                    match authorize(shared, fresh, &mut request) {
                        Ok(access) => State::Attempt {
                            future: Sending::Again {
                                future: Box::pin(Oneshot::new(self.service.clone(), request)),
                            },
                            key,
                            access,
                        },
                        Err(error) => State::Failed { error },
                    }
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

/// Sets `Authorization: Bearer <token>` on an attempt (the first or the retry), replacing
/// whatever the request had; the access token it carries.
fn authorize<B, St, R>(
    shared: &Shared<St, R>,
    token: Link,
    request: &mut Request<B>,
) -> Result<TokenSecret, UpstreamError> {
    // The link was loaded (or refreshed) for this request: its credentials are moved, not
    // cloned.
    match token.into_credentials() {
        (access, Some(authorization)) => {
            request.headers_mut().insert(AUTHORIZATION, authorization);
            Ok(access)
        }
        // The provider issued a token that cannot be sent in a header.
        (_, None) => Err(UpstreamError::Misconfigured {
            provider: shared.provider.clone(),
            source: None,
        }),
    }
}

/// What becomes of an attempt's answer.
enum Classified {
    /// Passed on (rows U1, U6), marked as such; or a transport error, returned as it is.
    PassOn,
    /// The token was rejected with this status (row U2).
    Rejected(StatusCode),
    /// The request fails (row U5).
    Failed(UpstreamError),
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
    /// that triggered it, if one did. A re-authorization keeps it whatever the refresh said:
    /// the provider itself answered the request (RFC 9209 `received-status`, not
    /// `http_request_denied`, which means "not forwarded").
    fn failure(&self, failure: RefreshFailure, rejected: Option<StatusCode>) -> UpstreamError {
        match failure {
            RefreshFailure::NotConnected => self.reauth(ReauthReason::NotConnected, rejected),
            RefreshFailure::Marked => self.reauth(ReauthReason::Marked, rejected),
            RefreshFailure::NoRefreshToken => self.reauth(ReauthReason::NoRefreshToken, rejected),
            RefreshFailure::Grant(error) if error.needs_reauthorization() => {
                self.reauth(ReauthReason::InvalidGrant, rejected)
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
    fn classify<B>(&self, response: &mut Response<B>) -> Classified {
        let status = response.status();
        let verdict = match response.extensions().get::<UpstreamClass>() {
            Some(class) => Verdict::of(class, status),
            None => {
                let class = classify_challenges(status, response.headers());
                let verdict = Verdict::of(&class, status);
                // A response passed on carries its class: the emitter labels a plain `403`
                // by it (row U6).
                if let Verdict::PassOn = verdict {
                    response.extensions_mut().insert(class);
                }
                verdict
            }
        };
        match verdict {
            Verdict::Rejected(status) => Classified::Rejected(status),
            Verdict::InsufficientScope(scopes) => {
                Classified::Failed(UpstreamError::InsufficientScope {
                    provider: self.provider.clone(),
                    scopes,
                })
            }
            Verdict::PassOn => {
                passed_on::mark(response);
                Classified::PassOn
            }
        }
    }
}

/// What the layer does with a provider's response of a class.
enum Verdict {
    /// Refresh (row U2); the status received.
    Rejected(StatusCode),
    /// Fail (row U5).
    InsufficientScope(Vec<String>),
    /// Pass it on (rows U1, U6).
    PassOn,
}

impl Verdict {
    /// Read from `class` in place: the class stays in the response for the emitter and for
    /// anyone outside.
    fn of(class: &UpstreamClass, status: StatusCode) -> Self {
        match class {
            // A gRPC provider rejects with HTTP 200 and a `grpc-status`: as a status received,
            // that is its HTTP counterpart, 401.
            UpstreamClass::TokenRejected if status.is_success() => {
                Self::Rejected(StatusCode::UNAUTHORIZED)
            }
            UpstreamClass::TokenRejected => Self::Rejected(status),
            UpstreamClass::InsufficientScope { scopes } => Self::InsufficientScope(scopes.clone()),
            _ => Self::PassOn,
        }
    }
}

/// A client error as a row U9 failure: a timeout, a connection the provider closed without
/// answering, or one that could not be made — by the error's type where the client exposes it,
/// by its message otherwise (hyper-util, for one, wraps hyper's errors in its own).
pub(crate) fn transport_error(provider: &Arc<str>, error: BoxError) -> UpstreamError {
    let provider = provider.clone();
    match transport_failure(&*error) {
        TransportFailure::TimedOut => UpstreamError::TimedOut {
            provider,
            source: error,
        },
        TransportFailure::Terminated => UpstreamError::ConnectionTerminated {
            provider,
            source: error,
        },
        TransportFailure::Unreachable => UpstreamError::Unreachable {
            provider,
            source: error,
        },
    }
}

enum TransportFailure {
    TimedOut,
    Terminated,
    Unreachable,
}

fn transport_failure(error: &(dyn std::error::Error + 'static)) -> TransportFailure {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<tokio::time::error::Elapsed>() {
            return TransportFailure::TimedOut;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::TimedOut => return TransportFailure::TimedOut,
                ErrorKind::ConnectionRefused => return TransportFailure::Unreachable,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return TransportFailure::Terminated,
                _ => {}
            }
        }
        let message = error.to_string().to_ascii_lowercase();
        if message.contains("timed out") || message.contains("timeout") {
            return TransportFailure::TimedOut;
        }
        // hyper's `IncompleteMessage`, and resets reported as text.
        if message.contains("closed before message completed")
            || message.contains("connection reset")
        {
            return TransportFailure::Terminated;
        }
        next = error.source();
    }
    TransportFailure::Unreachable
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        convert::Infallible,
        future::{Future, poll_fn},
        pin::{Pin, pin},
        sync::{Arc, Mutex},
        task::{Context, Poll},
        time::{Duration, Instant},
    };

    use bytes::Bytes;
    use http::{
        HeaderMap, HeaderValue, Request, Response, StatusCode,
        header::{AUTHORIZATION, CONNECTION, WWW_AUTHENTICATE},
    };
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, Service, ServiceExt, service_fn};

    use super::super::{NoReplay, RefreshAndRetryLayer};
    use crate::{
        emit::{EmitLayer, Emitter, PROXY_STATUS},
        upstream::{
            body::RetryBody,
            error::{NotReplayable, ReauthReason, UpstreamError},
            grant::{GrantError, Refresher, TokenResponse, refresher_fn},
            store::{Link, LinkKey, MemoryStore, TokenSecret},
        },
    };

    const PROVIDER: &str = "acme";

    fn key() -> LinkKey {
        LinkKey::new("user-1", PROVIDER)
    }

    /// A request body: `frames` one at a time, then its end — or, when `endless`, nothing
    /// more, ever.
    struct TestBody {
        frames: VecDeque<Frame<Bytes>>,
        endless: bool,
    }

    impl TestBody {
        fn new(chunks: &[&'static [u8]]) -> Self {
            Self {
                frames: chunks
                    .iter()
                    .map(|chunk| Frame::data(Bytes::from_static(chunk)))
                    .collect(),
                endless: false,
            }
        }

        fn with_trailers(mut self, trailers: HeaderMap) -> Self {
            self.frames.push_back(Frame::trailers(trailers));
            self
        }

        fn endless(mut self) -> Self {
            self.endless = true;
            self
        }
    }

    impl Body for TestBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = self.get_mut();
            match this.frames.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None if this.endless => Poll::Pending,
                None => Poll::Ready(None),
            }
        }

        fn is_end_stream(&self) -> bool {
            !self.endless && self.frames.is_empty()
        }
    }

    /// A request for the link of [`key`], carrying the caller's own token.
    fn request(body: TestBody) -> Request<TestBody> {
        let mut request = Request::post("https://api.acme.example/items")
            .header(AUTHORIZATION, "Bearer caller-token")
            .body(body)
            .unwrap();
        request.extensions_mut().insert(key());
        request
    }

    /// What the provider saw of one request.
    #[derive(Debug, PartialEq)]
    struct Sent {
        authorization: Option<String>,
        body: Bytes,
        trailers: Option<HeaderMap>,
    }

    impl Sent {
        fn new(token: &str, body: &'static [u8]) -> Self {
            Self {
                authorization: Some(format!("Bearer {token}")),
                body: Bytes::from_static(body),
                trailers: None,
            }
        }
    }

    type Log = Arc<Mutex<Vec<Sent>>>;

    /// A provider that accepts the access token `valid` and answers `401` to any other,
    /// reading each request body whole.
    fn provider(
        valid: &'static str,
        log: &Log,
    ) -> impl Service<
        Request<RetryBody<TestBody>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        let log = log.clone();
        service_fn(move |request: Request<RetryBody<TestBody>>| {
            let log = log.clone();
            async move {
                let authorization = request
                    .headers()
                    .get(AUTHORIZATION)
                    .map(|value| value.to_str().unwrap().to_owned());
                let status = if authorization == Some(format!("Bearer {valid}")) {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                let collected = request.into_body().collect().await.unwrap();
                log.lock().unwrap().push(Sent {
                    authorization,
                    trailers: collected.trailers().cloned(),
                    body: collected.to_bytes(),
                });
                let response = Response::builder().status(status);
                Ok(response.body(Full::default()).unwrap())
            }
        })
    }

    type Presented = Arc<Mutex<Vec<String>>>;

    /// The layer over `store`, refreshing with `answer` and recording the refresh tokens
    /// presented.
    fn layer<A, Fut>(
        store: &MemoryStore,
        presented: &Presented,
        answer: A,
    ) -> RefreshAndRetryLayer<MemoryStore, impl Refresher>
    where
        A: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<TokenResponse, GrantError>> + Send + 'static,
    {
        let presented = presented.clone();
        let refresher = refresher_fn(move |refresh_token: TokenSecret| {
            presented
                .lock()
                .unwrap()
                .push(refresh_token.expose_secret().to_owned());
            answer()
        });
        RefreshAndRetryLayer::new(PROVIDER, store.clone(), refresher)
    }

    /// A refresh that rotates the refresh token.
    async fn rotated() -> Result<TokenResponse, GrantError> {
        Ok(TokenResponse::new("at-1")
            .with_refresh_token("rt-1")
            .with_expires_in(Duration::from_secs(3600)))
    }

    /// The stored link of [`key`]: access token, refresh token, whether it is marked.
    fn stored(store: &MemoryStore) -> (String, Option<String>, bool) {
        let link = store.get(&key()).expect("a link");
        (
            link.access_token().expose_secret().to_owned(),
            link.refresh_token().map(|t| t.expose_secret().to_owned()),
            link.needs_reauthorization(),
        )
    }

    fn link(access: &str, refresh: Option<&str>, marked: bool) -> (String, Option<String>, bool) {
        (access.to_owned(), refresh.map(str::to_owned), marked)
    }

    fn stale_store() -> MemoryStore {
        let store = MemoryStore::new();
        store.insert(key(), Link::new("at-0").with_refresh_token("rt-0"));
        store
    }

    #[tokio::test]
    async fn without_a_link_key_the_request_and_the_answer_pass_untouched() {
        let store = stale_store();
        let presented = Presented::default();
        let provider = service_fn(|request: Request<RetryBody<TestBody>>| async move {
            let authorization = request.headers()[AUTHORIZATION].clone();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "payload");
            let response = Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(WWW_AUTHENTICATE, r#"Bearer realm="acme""#)
                .header(CONNECTION, "close")
                .header("x-seen-authorization", authorization);
            Ok::<_, Infallible>(response.body(Full::<Bytes>::default()).unwrap())
        });
        let client = layer(&store, &presented, rotated).layer(provider);

        let mut request = request(TestBody::new(&[b"payload"]));
        request.extensions_mut().remove::<LinkKey>();
        let response = client.oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let headers = response.headers();
        assert_eq!(headers["x-seen-authorization"], "Bearer caller-token");
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer realm="acme""#);
        assert_eq!(headers[CONNECTION], "close");
        assert!(presented.lock().unwrap().is_empty());
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));
    }

    #[tokio::test]
    async fn the_stored_token_replaces_the_callers_and_the_answer_is_cleaned() {
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let provider = provider("at-0", &log).map_response(|mut response| {
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("x-hop"));
            headers.insert("x-hop", HeaderValue::from_static("1"));
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            headers.insert("x-kept", HeaderValue::from_static("yes"));
            response
        });
        let client = layer(&store, &presented, rotated).layer(provider);

        let response = client
            .oneshot(request(TestBody::new(&[b"pay", b"load"])))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers.keys().map(|name| name.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );
        assert_eq!(*log.lock().unwrap(), [Sent::new("at-0", b"payload")]);
        assert!(presented.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_plain_403_says_who_answered_and_loses_the_providers_challenge() {
        let store = stale_store();
        let provider = service_fn(|_: Request<RetryBody<TestBody>>| async {
            let response = Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header(WWW_AUTHENTICATE, r#"Bearer realm="acme""#);
            Ok::<_, Infallible>(response.body(Full::<Bytes>::default()).unwrap())
        });
        // The emitter that renders the caller's failures labels the passed-on 403.
        let client = EmitLayer::new(Emitter::new("api").with_proxy_name("gw")).layer(
            RefreshAndRetryLayer::new(PROVIDER, store.clone(), refresher_fn(|_| rotated()))
                .layer(provider),
        );

        let response = client.oneshot(request(TestBody::new(&[]))).await.unwrap();

        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers().get(WWW_AUTHENTICATE), None);
        assert_eq!(response.headers()[PROXY_STATUS], "gw; received-status=403");
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));
    }

    #[tokio::test]
    async fn a_token_expiring_within_the_skew_is_refreshed_before_the_call() {
        let store = MemoryStore::new();
        store.insert(
            key(),
            Link::new("at-0")
                .with_refresh_token("rt-0")
                .with_expires_in(Duration::from_secs(30)),
        );
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated).layer(provider("at-1", &log));

        let response = client
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(*log.lock().unwrap(), [Sent::new("at-1", b"payload")]);
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_and_the_request_sent_again_byte_for_byte() {
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated).layer(provider("at-1", &log));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        let chunks: [&[u8]; 3] = [b"\x00\xff", b"binary\r\n", b"payload"];

        let response = client
            .oneshot(request(
                TestBody::new(&chunks).with_trailers(trailers.clone()),
            ))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        let sent = |token| Sent {
            trailers: Some(trailers.clone()),
            ..Sent::new(token, b"\x00\xffbinary\r\npayload")
        };
        assert_eq!(*log.lock().unwrap(), [sent("at-0"), sent("at-1")]);
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test]
    async fn the_retry_carries_the_requests_extensions() {
        #[derive(Clone, Debug, PartialEq)]
        struct Marker(&'static str);
        // What each attempt carried: its token, its key, its marker.
        type Seen = Arc<Mutex<Vec<(String, Option<LinkKey>, Option<Marker>)>>>;

        for marker in [None, Some(Marker("mine"))] {
            let store = stale_store();
            let seen = Seen::default();
            let provider = service_fn({
                let seen = seen.clone();
                move |request: Request<RetryBody<TestBody>>| {
                    let authorization = request.headers()[AUTHORIZATION].to_str().unwrap();
                    let ok = authorization == "Bearer at-1";
                    seen.lock().unwrap().push((
                        authorization.to_owned(),
                        request.extensions().get::<LinkKey>().cloned(),
                        request.extensions().get::<Marker>().cloned(),
                    ));
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    };
                    let response = Response::builder().status(status);
                    std::future::ready(Ok::<_, Infallible>(
                        response.body(Full::<Bytes>::default()).unwrap(),
                    ))
                }
            });
            let client = layer(&store, &Presented::default(), rotated).layer(provider);
            let mut request = request(TestBody::new(&[b"payload"]));
            if let Some(marker) = &marker {
                request.extensions_mut().insert(marker.clone());
            }

            let response = client.oneshot(request).await.unwrap();

            assert_eq!(response.status(), StatusCode::OK);
            let attempt = |token: &str| (format!("Bearer {token}"), Some(key()), marker.clone());
            assert_eq!(*seen.lock().unwrap(), [attempt("at-0"), attempt("at-1")]);
        }
    }

    #[tokio::test]
    async fn a_fresh_token_rejected_too_marks_the_link_and_is_not_retried_again() {
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated).layer(provider("none", &log));

        let error = client
            .clone()
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap_err();

        let UpstreamError::ReauthRequired {
            provider,
            reason,
            received_status,
            connect_url,
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(&*provider, PROVIDER);
        assert_eq!(reason, ReauthReason::RejectedAfterRefresh);
        assert_eq!(received_status, Some(StatusCode::UNAUTHORIZED));
        assert_eq!(connect_url, None);
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(
            *log.lock().unwrap(),
            [Sent::new("at-0", b"payload"), Sent::new("at-1", b"payload")]
        );
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), true));

        // Marked: the next request fails without reaching the provider or the token endpoint.
        let error = client
            .oneshot(request(TestBody::new(&[])))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                UpstreamError::ReauthRequired {
                    reason: ReauthReason::Marked,
                    received_status: None,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(log.lock().unwrap().len(), 2);
        assert_eq!(presented.lock().unwrap().len(), 1);
    }

    /// Sends one request whose token the provider rejects, refreshing with `answer`; the
    /// error, and the stored link afterwards.
    async fn refresh_failing_with(
        store: MemoryStore,
        answer: impl Fn() -> Result<TokenResponse, GrantError> + Clone + Send + Sync + 'static,
    ) -> (UpstreamError, (String, Option<String>, bool)) {
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, move || std::future::ready(answer()))
            .retry_after(Duration::from_secs(3))
            .layer(provider("at-1", &log));
        let error = client
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap_err();
        assert_eq!(*log.lock().unwrap(), [Sent::new("at-0", b"payload")]);
        let presented = presented.lock().unwrap().clone();
        assert_eq!(presented, ["rt-0"]);
        (error, stored(&store))
    }

    #[tokio::test]
    async fn invalid_grant_marks_the_link_and_keeps_its_refresh_token() {
        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::InvalidGrant {
                status: StatusCode::BAD_REQUEST,
            })
        })
        .await;
        assert!(
            matches!(
                error,
                UpstreamError::ReauthRequired {
                    reason: ReauthReason::InvalidGrant,
                    // The provider answered the request itself.
                    received_status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(after, link("at-0", Some("rt-0"), true));
    }

    #[tokio::test]
    async fn a_refused_client_is_our_misconfiguration_and_keeps_the_tokens() {
        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::Misconfigured {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client".to_owned(),
            })
        })
        .await;
        let UpstreamError::Misconfigured {
            provider,
            source:
                Some(GrantError::Misconfigured {
                    status,
                    error: code,
                }),
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(&*provider, PROVIDER);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code, "invalid_client");
        assert_eq!(after, link("at-0", Some("rt-0"), false));
    }

    #[tokio::test]
    async fn an_unavailable_token_endpoint_keeps_the_tokens_and_says_when_to_retry() {
        // Its own `Retry-After` wins…
        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::Unavailable {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: Some(Duration::from_secs(7)),
            })
        })
        .await;
        let UpstreamError::RefreshUnavailable {
            retry_after,
            source: Some(GrantError::Unavailable { status, .. }),
            ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(retry_after, Duration::from_secs(7));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(after, link("at-0", Some("rt-0"), false));

        // …else the layer's.
        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::Unparseable {
                status: StatusCode::OK,
            })
        })
        .await;
        let UpstreamError::RefreshUnavailable {
            retry_after,
            source: Some(GrantError::Unparseable { status }),
            ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(retry_after, Duration::from_secs(3));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(after, link("at-0", Some("rt-0"), false));
    }

    #[tokio::test]
    async fn an_unusable_answer_fails_as_its_kind_but_its_new_refresh_token_is_kept() {
        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::RefreshTokenRotated {
                error: Box::new(GrantError::Unparseable {
                    status: StatusCode::OK,
                }),
                refresh_token: TokenSecret::new("rt-1"),
            })
        })
        .await;
        assert!(
            matches!(
                error,
                UpstreamError::RefreshUnavailable {
                    source: Some(GrantError::Unparseable { .. }),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(after, link("at-0", Some("rt-1"), false));

        let (error, after) = refresh_failing_with(stale_store(), || {
            Err(GrantError::RefreshTokenRotated {
                error: Box::new(GrantError::Misconfigured {
                    status: StatusCode::OK,
                    error: "unsupported_token_type".to_owned(),
                }),
                refresh_token: TokenSecret::new("rt-1"),
            })
        })
        .await;
        assert!(
            matches!(
                error,
                UpstreamError::Misconfigured {
                    source: Some(GrantError::Misconfigured { .. }),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(after, link("at-0", Some("rt-1"), false));
    }

    #[tokio::test]
    async fn a_token_endpoint_that_never_answers_times_out_as_unavailable() {
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, std::future::pending)
            .refresh_timeout(Duration::from_millis(50))
            .retry_after(Duration::from_secs(3))
            .layer(provider("at-1", &log));

        let started = Instant::now();
        let error = client
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap_err();

        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                error,
                UpstreamError::RefreshUnavailable {
                    retry_after,
                    source: None,
                    ..
                } if retry_after == Duration::from_secs(3)
            ),
            "{error:?}"
        );
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));
    }

    #[tokio::test]
    async fn without_a_refresh_token_a_rejection_marks_the_link() {
        let store = MemoryStore::new();
        store.insert(key(), Link::new("at-0"));
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated).layer(provider("at-1", &log));

        let error = client
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                UpstreamError::ReauthRequired {
                    reason: ReauthReason::NoRefreshToken,
                    received_status: Some(StatusCode::UNAUTHORIZED),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(presented.lock().unwrap().is_empty());
        assert_eq!(stored(&store), link("at-0", None, true));
    }

    #[tokio::test]
    async fn a_link_never_connected_is_not_sent() {
        let store = MemoryStore::new();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated).layer(provider("at-1", &log));

        let error = client
            .oneshot(request(TestBody::new(&[b"payload"])))
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                UpstreamError::ReauthRequired {
                    reason: ReauthReason::NotConnected,
                    received_status: None,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(log.lock().unwrap().is_empty());
        assert!(presented.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_body_too_large_to_keep_is_refreshed_for_but_not_sent_again() {
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, rotated)
            .replay_limit(4)
            .layer(provider("at-1", &log));

        let error = client
            .oneshot(request(TestBody::new(&[b"01234", b"56789"])))
            .await
            .unwrap_err();

        let UpstreamError::BodyNotReplayable {
            reason,
            received_status,
            ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(reason, NotReplayable::TooLarge { limit: 4 });
        assert_eq!(received_status, StatusCode::UNAUTHORIZED);
        assert_eq!(*log.lock().unwrap(), [Sent::new("at-0", b"0123456789")]);
        // Refreshed, so that the caller's next attempt goes through.
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test]
    async fn a_no_replay_body_is_sent_as_it_streams_and_not_sent_again() {
        let store = stale_store();
        let presented = Presented::default();
        let first_frames = Arc::new(Mutex::new(Vec::new()));
        // The body never ends: the provider answers after its first frame.
        let provider = service_fn({
            let first_frames = first_frames.clone();
            move |request: Request<RetryBody<TestBody>>| {
                let first_frames = first_frames.clone();
                async move {
                    let mut body = request.into_body();
                    let frame = body.frame().await.unwrap().unwrap();
                    first_frames
                        .lock()
                        .unwrap()
                        .push(frame.into_data().unwrap());
                    let response = Response::builder().status(StatusCode::UNAUTHORIZED);
                    Ok::<_, Infallible>(response.body(Full::<Bytes>::default()).unwrap())
                }
            }
        });
        let client = layer(&store, &presented, rotated).layer(provider);
        let mut request = request(TestBody::new(&[b"hello"]).endless());
        request.extensions_mut().insert(NoReplay);

        let error = tokio::time::timeout(Duration::from_secs(5), client.oneshot(request))
            .await
            .expect("sent without waiting for the body's end")
            .unwrap_err();

        let UpstreamError::BodyNotReplayable {
            reason,
            received_status,
            ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(reason, NotReplayable::Streamed);
        assert_eq!(received_status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            *first_frames.lock().unwrap(),
            [Bytes::from_static(b"hello")]
        );
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rejections_share_one_refresh() {
        const REQUESTS: usize = 50;
        let store = stale_store();
        let presented = Presented::default();
        let log = Log::default();
        let client = layer(&store, &presented, || async {
            // Long enough for every request to join.
            tokio::time::sleep(Duration::from_millis(50)).await;
            rotated().await
        })
        .layer(provider("at-1", &log));

        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..REQUESTS {
            calls.spawn(
                client
                    .clone()
                    .oneshot(request(TestBody::new(&[b"payload"]))),
            );
        }
        while let Some(call) = calls.join_next().await {
            assert_eq!(call.unwrap().unwrap().status(), StatusCode::OK);
        }

        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        let log = log.lock().unwrap();
        let with = |token: &str| {
            log.iter()
                .filter(|sent| **sent == Sent::new(token, b"payload"))
                .count()
        };
        assert_eq!((with("at-0"), with("at-1")), (REQUESTS, REQUESTS));
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test]
    #[should_panic(expected = "ResponseFuture polled after completion")]
    async fn polling_a_completed_future_panics_instead_of_hanging() {
        let log = Log::default();
        let mut client =
            layer(&stale_store(), &Presented::default(), rotated).layer(provider("at-0", &log));
        let mut future = pin!(
            client
                .ready()
                .await
                .unwrap()
                .call(request(TestBody::new(&[])))
        );
        assert_eq!(future.as_mut().await.unwrap().status(), StatusCode::OK);
        let _ = poll_fn(|cx| future.as_mut().poll(cx)).await;
    }

    #[test]
    fn transport_failures_are_told_apart() {
        use std::io::{Error, ErrorKind};

        use super::transport_error;
        use crate::BoxError;
        let provider: Arc<str> = Arc::from(PROVIDER);
        let kind = |error: BoxError| match transport_error(&provider, error) {
            UpstreamError::TimedOut { .. } => "timed out",
            UpstreamError::ConnectionTerminated { .. } => "terminated",
            UpstreamError::Unreachable { .. } => "unreachable",
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(Error::from(ErrorKind::ConnectionRefused).into()),
            "unreachable"
        );
        assert_eq!(
            kind(Error::from(ErrorKind::ConnectionReset).into()),
            "terminated"
        );
        assert_eq!(
            kind(Error::from(ErrorKind::UnexpectedEof).into()),
            "terminated"
        );
        assert_eq!(kind(Error::from(ErrorKind::TimedOut).into()), "timed out");
        // As hyper-util reports them: its own error, hyper's as the source.
        let wrapped = Error::other(Error::other("connection closed before message completed"));
        assert_eq!(kind(wrapped.into()), "terminated");
        assert_eq!(kind("dns error: no such host".into()), "unreachable");
    }
}
