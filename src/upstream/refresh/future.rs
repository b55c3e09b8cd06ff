use std::{
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::SystemTime,
};

use bytes::Bytes;
use http::{
    Extensions, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
    header::{AUTHORIZATION, WWW_AUTHENTICATE},
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
    emit::PROXY_STATUS,
    upstream::{
        body::{Buffered, Buffering, RetryBody},
        classify::{UpstreamClass, classify_challenges},
        error::{NotReplayable, ReauthReason, UpstreamError},
        grant::Refresher,
        store::{LinkKey, TokenStore, UpstreamToken},
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
        state: State<S::Future, St::Load, Oneshot<S, Request<RetryBody<B>>>>,
        service: S,
        shared: Arc<Shared<St, R>>,
        key: Option<LinkKey>,
        head: Option<Head>,
        body: BodyState<B>,
        token: Option<UpstreamToken>,
        rejected: Option<StatusCode>,
        // This request's token came from a refresh: a rejection of it is final (row U4), never
        // a second refresh.
        refreshed: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, L, O> {
        // No `LinkKey`: not ours.
        Passthrough { #[pin] future: F },
        // Loading the link (and buffering the body meanwhile).
        Load { #[pin] load: L },
        // Link loaded; finishing the body.
        Prepare,
        // Refreshing, before the first attempt or after a rejection.
        Refresh { future: BoxFuture<Outcome>, trigger: Trigger },
        First { #[pin] future: F },
        Retry { #[pin] future: O },
        // Marking the link as needing re-authorization, then failing.
        Mark { future: BoxFuture<()>, error: Option<UpstreamError> },
        Failed { error: Option<UpstreamError> },
    }
}

#[derive(Clone, Copy)]
enum Trigger {
    /// The token expires within the skew (row U3).
    Proactive,
    /// The provider rejected it (row U2).
    Rejected,
}

enum BodyState<B> {
    Buffering(Buffering<B>),
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    Large {
        prefix: Bytes,
        rest: B,
    },
    // The request carries `NoReplay`: sent as it streams, never buffered.
    Streamed {
        rest: B,
    },
    Sent(NotReplayable),
    Failed(Option<BoxError>),
}

impl<B> BodyState<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Drives buffering to its end.
    fn poll_buffered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Self::Buffering(buffering) = self {
            *self = match ready!(buffering.poll_buffer(cx)) {
                Ok(Buffered::Whole { data, trailers }) => Self::Whole { data, trailers },
                Ok(Buffered::TooLarge { prefix, rest }) => Self::Large { prefix, rest },
                Err(error) => Self::Failed(Some(error.into())),
            };
        }
        Poll::Ready(())
    }
}

/// The request without its body, to build each attempt from.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
}

impl Head {
    fn request<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        request
    }

    fn into_request<B>(self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        *request.extensions_mut() = self.extensions;
        request
    }
}

impl<S, St, R, B> ResponseFuture<S, St, R, B>
where
    S: Service<Request<RetryBody<B>>>,
    St: TokenStore,
    B: Body + Unpin,
{
    pub(super) fn new(mut service: S, shared: Arc<Shared<St, R>>, request: Request<B>) -> Self {
        let (parts, body) = request.into_parts();
        let key = parts.extensions.get::<LinkKey>().cloned();
        let (state, body) = match &key {
            None => {
                let request = Request::from_parts(parts, RetryBody::chained(Bytes::new(), body));
                let state = State::Passthrough {
                    future: service.call(request),
                };
                return Self {
                    state,
                    service,
                    shared,
                    key,
                    head: None,
                    body: BodyState::Sent(NotReplayable::TooLarge { limit: 0 }),
                    token: None,
                    rejected: None,
                    refreshed: false,
                };
            }
            Some(key) if !shared.owns(key) => {
                tracing::error!(
                    layer = &*shared.provider,
                    request = key.provider(),
                    "the request's LinkKey names another provider than this layer's"
                );
                let error = UpstreamError::Misconfigured {
                    provider: Arc::from(key.provider()),
                    source: None,
                };
                (
                    State::Failed { error: Some(error) },
                    BodyState::Failed(None),
                )
            }
            Some(key) => {
                let body = if parts.extensions.get::<NoReplay>().is_some() {
                    BodyState::Streamed { rest: body }
                } else if body.is_end_stream() {
                    BodyState::Whole {
                        data: Bytes::new(),
                        trailers: None,
                    }
                } else {
                    BodyState::Buffering(Buffering::new(body, shared.replay_limit))
                };
                (
                    State::Load {
                        load: shared.store.load(key),
                    },
                    body,
                )
            }
        };
        Self {
            state,
            service,
            shared,
            key,
            head: Some(Head {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                extensions: parts.extensions,
            }),
            body,
            token: None,
            rejected: None,
            refreshed: false,
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
        let shared = &**this.shared;
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Passthrough { future } => {
                    return future
                        .poll(cx)
                        .map_err(|e| transport_error(&shared.provider, e.into()));
                }
                StateProj::Load { load } => {
                    // Buffer while the store answers.
                    let _ = this.body.poll_buffered(cx);
                    match ready!(load.poll(cx)) {
                        Err(error) => failed(UpstreamError::StoreUnavailable {
                            provider: shared.provider.clone(),
                            source: Arc::new(error),
                        }),
                        Ok(None) => failed(shared.reauth(ReauthReason::NotConnected, None)),
                        Ok(Some(stored)) => {
                            // A refreshed link the store did not take replaces the record it
                            // was refreshed from.
                            let token = match this.key.as_ref() {
                                Some(key) => {
                                    shared.flights.newer_than(key, &stored).unwrap_or(stored)
                                }
                                None => stored,
                            };
                            if token.needs_reauthorization() {
                                failed(shared.reauth(ReauthReason::Marked, None))
                            } else {
                                *this.token = Some(token);
                                State::Prepare
                            }
                        }
                    }
                }
                StateProj::Prepare => {
                    ready!(this.body.poll_buffered(cx));
                    if let BodyState::Failed(error) = this.body {
                        let source = error.take().unwrap_or_else(|| "request body failed".into());
                        return Poll::Ready(Err(UpstreamError::RequestBody {
                            provider: shared.provider.clone(),
                            source,
                        }));
                    }
                    let (Some(key), Some(token)) = (this.key.as_ref(), this.token.as_ref()) else {
                        return Poll::Pending;
                    };
                    let refresh = token.refresh_token().is_some()
                        && token.refresh_due(shared.skew, SystemTime::now())
                        && !shared.flights.cooling(key);
                    if refresh {
                        State::Refresh {
                            future: flight::refresh(
                                this.shared.clone(),
                                key.clone(),
                                token.access_token().clone(),
                            ),
                            trigger: Trigger::Proactive,
                        }
                    } else {
                        first_attempt(this.service, this.head, this.body, token, shared)
                    }
                }
                StateProj::Refresh { future, trigger } => {
                    let outcome = ready!(future.as_mut().poll(cx));
                    let (Some(key), Some(token)) = (this.key.as_ref(), this.token.as_mut()) else {
                        return Poll::Pending;
                    };
                    match (*trigger, outcome) {
                        (Trigger::Proactive, Ok(fresh)) => {
                            *token = fresh;
                            *this.refreshed = true;
                            first_attempt(this.service, this.head, this.body, token, shared)
                        }
                        (Trigger::Proactive, Err(failure)) => {
                            let transient = matches!(
                                failure,
                                RefreshFailure::Grant(ref e) if !e.needs_reauthorization()
                            ) || matches!(
                                failure,
                                RefreshFailure::Store(_)
                                    | RefreshFailure::TimedOut
                                    | RefreshFailure::Aborted
                            );
                            if transient && !token.is_expired(SystemTime::now()) {
                                // Still valid: use it, and don't ask again for a while.
                                tracing::warn!(
                                    provider = key.provider(),
                                    "refresh ahead of expiry failed; using the current token"
                                );
                                shared.flights.cool_down(key, shared.retry_after);
                                first_attempt(this.service, this.head, this.body, token, shared)
                            } else {
                                failed(shared.failure(failure, None))
                            }
                        }
                        (Trigger::Rejected, Ok(fresh)) => {
                            *token = fresh;
                            *this.refreshed = true;
                            match (&*this.body, this.head.as_ref()) {
                                (BodyState::Whole { data, trailers }, Some(head)) => {
                                    let mut request = head.request(RetryBody::buffered(
                                        data.clone(),
                                        trailers.clone(),
                                    ));
                                    match authorize(&mut request, token, shared) {
                                        Ok(()) => State::Retry {
                                            future: Oneshot::new(this.service.clone(), request),
                                        },
                                        Err(error) => failed(error),
                                    }
                                }
                                (BodyState::Sent(reason), _) => {
                                    failed(UpstreamError::BodyNotReplayable {
                                        provider: shared.provider.clone(),
                                        reason: *reason,
                                        received_status: this
                                            .rejected
                                            .unwrap_or(StatusCode::UNAUTHORIZED),
                                    })
                                }
                                _ => return Poll::Pending,
                            }
                        }
                        (Trigger::Rejected, Err(failure)) => {
                            failed(shared.failure(failure, *this.rejected))
                        }
                    }
                }
                StateProj::First { future } => {
                    let response = ready!(future.poll(cx))
                        .map_err(|e| transport_error(&shared.provider, e.into()))?;
                    match shared.classify(response) {
                        Classified::Done(result) => return Poll::Ready(result),
                        Classified::Rejected(status) => {
                            let (Some(key), Some(token)) = (this.key.as_ref(), this.token.as_ref())
                            else {
                                return Poll::Pending;
                            };
                            if *this.refreshed {
                                // Refreshed ahead of expiry for this very request, and still
                                // rejected: once per request (row U4).
                                fresh_token_rejected(this.shared, key, token, status)
                            } else {
                                tracing::debug!(provider = key.provider(), %status, "token rejected; refreshing");
                                *this.rejected = Some(status);
                                State::Refresh {
                                    future: flight::refresh(
                                        this.shared.clone(),
                                        key.clone(),
                                        token.access_token().clone(),
                                    ),
                                    trigger: Trigger::Rejected,
                                }
                            }
                        }
                    }
                }
                StateProj::Retry { future } => {
                    let response = ready!(future.poll(cx))
                        .map_err(|e| transport_error(&shared.provider, e.into()))?;
                    match shared.classify(response) {
                        Classified::Done(result) => return Poll::Ready(result),
                        Classified::Rejected(status) => {
                            let (Some(key), Some(token)) = (this.key.as_ref(), this.token.as_ref())
                            else {
                                return Poll::Pending;
                            };
                            fresh_token_rejected(this.shared, key, token, status)
                        }
                    }
                }
                StateProj::Mark { future, error } => {
                    ready!(future.as_mut().poll(cx));
                    return match error.take() {
                        Some(error) => Poll::Ready(Err(error)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Failed { error } => {
                    return match error.take() {
                        Some(error) => Poll::Ready(Err(error)),
                        None => Poll::Pending,
                    };
                }
            };
            this.state.set(next);
        }
    }
}

fn failed<F, L, O>(error: UpstreamError) -> State<F, L, O> {
    State::Failed { error: Some(error) }
}

/// Sends the first attempt with `token`.
fn first_attempt<S, St, R, B, F, L, O>(
    service: &mut S,
    head: &mut Option<Head>,
    body: &mut BodyState<B>,
    token: &UpstreamToken,
    shared: &Shared<St, R>,
) -> State<F, L, O>
where
    S: Service<Request<RetryBody<B>>, Future = F>,
{
    let request = match mem::replace(body, BodyState::Failed(None)) {
        BodyState::Whole { data, trailers } => {
            let request = head
                .as_ref()
                .map(|head| head.request(RetryBody::buffered(data.clone(), trailers.clone())));
            *body = BodyState::Whole { data, trailers };
            request
        }
        BodyState::Large { prefix, rest } => {
            *body = BodyState::Sent(NotReplayable::TooLarge {
                limit: shared.replay_limit,
            });
            // Cannot be sent twice: no need to keep the head either.
            head.take()
                .map(|head| head.into_request(RetryBody::chained(prefix, rest)))
        }
        BodyState::Streamed { rest } => {
            *body = BodyState::Sent(NotReplayable::Streamed);
            head.take()
                .map(|head| head.into_request(RetryBody::chained(Bytes::new(), rest)))
        }
        other => {
            *body = other;
            None
        }
    };
    let Some(mut request) = request else {
        return State::Failed { error: None };
    };
    match authorize(&mut request, token, shared) {
        Ok(()) => State::First {
            future: service.call(request),
        },
        Err(error) => failed(error),
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

/// A token fresh from a refresh was rejected too (row U4): mark the link as needing
/// re-authorization, then fail with that.
fn fresh_token_rejected<F, L, O, St, R>(
    shared: &Arc<Shared<St, R>>,
    key: &LinkKey,
    token: &UpstreamToken,
    status: StatusCode,
) -> State<F, L, O>
where
    St: TokenStore,
    R: Send + Sync + 'static,
{
    tracing::warn!(provider = key.provider(), %status, "a fresh token was rejected; the link needs re-authorization");
    State::Mark {
        future: flight::mark_rejected(shared.clone(), key.clone(), token.access_token().clone()),
        error: Some(shared.reauth(ReauthReason::RejectedAfterRefresh, Some(status))),
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

    /// What to do with a provider's response.
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
                // Row U6: the caller holds none of the credentials the provider's challenge
                // names; say who answered.
                let headers = response.headers_mut();
                strip_hop_by_hop(headers);
                headers.remove(WWW_AUTHENTICATE);
                headers.append(PROXY_STATUS, self.forbidden_status.clone());
                Classified::Done(Ok(response))
            }
            _ => {
                // Row U1: passed on, but the provider's challenges name credentials the caller
                // does not hold (and could pass for ours).
                let headers = response.headers_mut();
                strip_hop_by_hop(headers);
                headers.remove(WWW_AUTHENTICATE);
                Classified::Done(Ok(response))
            }
        }
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
