//! The one hardened HTTP/1.1 server every listening edge uses (the push webhook receiver and the
//! admin API), so no client can hold a socket, a task or memory without bound:
//!
//! - **Connection cap** (`max_connections`): a semaphore taken at accept. Above the cap a plain
//!   HTTP connection gets a canned `503 Service Unavailable` (written without waiting, then
//!   closed); a TLS connection is closed (answering would first cost the handshake the cap is
//!   there to save).
//! - **TLS handshakes** (`max_tls_handshakes`, `tls_handshake_timeout`): run in the connection's
//!   own task, capped separately, so slow handshakes can neither stall accepting nor pile up.
//! - **Header-read timeout** (`header_read_timeout`, hyper's own): a client that does not send a
//!   complete request head in time, including an idle keep-alive connection that sends nothing,
//!   is disconnected.
//! - **Body timeout** (`body_timeout`): the whole body must arrive within this time of the head;
//!   a trickling body fails the handler's body read.
//! - **Request timeout** (`request_timeout`): head received to response ready; past it the
//!   request is answered `503` and the connection closed.
//! - **Graceful shutdown with a hard deadline** (`shutdown_timeout`): on shutdown the listener
//!   closes, idle connections close, in-flight requests get until the deadline, then every
//!   remaining connection is dropped.
//!
//! Body *size* limits stay with the application (`axum::extract::DefaultBodyLimit`), which knows
//! what its bodies are; the push receiver defaults to 64 KiB.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::emit::{ConnectionShed, InternalEvent, ShedReason};
use crate::error::CoreError;

/// Limits of one HTTP listener (`[....http]` in the config). Every field has a documented
/// default; [`HttpServerConfig::validate`] names the failing key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// A client must send a complete request head (request line and headers) within this time
    /// of connecting or of its previous response. Default 10 s.
    #[serde(default = "d_header_read", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The whole request body must arrive within this time of the head. Default 10 s.
    #[serde(default = "d_body", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Head received to response ready; past it the answer is 503. Default 30 s.
    #[serde(default = "d_request", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most connections open at once; more are shed (503 on HTTP, closed on HTTPS). Default 512
    /// (an idle connection costs about 20 KB; keep it below the process's open-file limit).
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    /// Most TLS handshakes in progress at once; more are closed. Default 128.
    #[serde(default = "d_max_hs")]
    pub max_tls_handshakes: usize,
    /// A TLS handshake must finish within this time. Default 10 s.
    #[serde(default = "d_hs", with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// On shutdown, in-flight requests get this long; then every connection is dropped.
    /// Default 10 s.
    #[serde(default = "d_shutdown", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn d_header_read() -> Duration {
    Duration::from_secs(10)
}
fn d_body() -> Duration {
    Duration::from_secs(10)
}
fn d_request() -> Duration {
    Duration::from_secs(30)
}
fn d_max_conn() -> usize {
    512
}
fn d_max_hs() -> usize {
    128
}
fn d_hs() -> Duration {
    Duration::from_secs(10)
}
fn d_shutdown() -> Duration {
    Duration::from_secs(10)
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_read_timeout: d_header_read(),
            body_timeout: d_body(),
            request_timeout: d_request(),
            max_connections: d_max_conn(),
            max_tls_handshakes: d_max_hs(),
            tls_handshake_timeout: d_hs(),
            shutdown_timeout: d_shutdown(),
        }
    }
}

impl HttpServerConfig {
    /// Pure validation; `prefix` is the dotted key of this table (e.g.
    /// `sources.fhir_push.main.http`).
    pub fn validate(&self, prefix: &str) -> Result<(), CoreError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let at_least = |d: Duration, min: Duration, k: &str| {
            if d < min {
                Err(CoreError::config(
                    key(k),
                    format!("must be at least {}", humantime::format_duration(min)),
                ))
            } else {
                Ok(())
            }
        };
        let ms = Duration::from_millis(100);
        at_least(self.header_read_timeout, ms, "header_read_timeout")?;
        at_least(self.body_timeout, ms, "body_timeout")?;
        at_least(self.request_timeout, ms, "request_timeout")?;
        at_least(self.tls_handshake_timeout, ms, "tls_handshake_timeout")?;
        at_least(self.shutdown_timeout, Duration::ZERO, "shutdown_timeout")?;
        if self.max_connections == 0 {
            return Err(CoreError::config(
                key("max_connections"),
                "must be at least 1",
            ));
        }
        if self.max_tls_handshakes == 0 || self.max_tls_handshakes > self.max_connections {
            return Err(CoreError::config(
                key("max_tls_handshakes"),
                "must be between 1 and max_connections",
            ));
        }
        Ok(())
    }
}

const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 13\r\nconnection: close\r\nretry-after: 1\r\n\r\nover capacity";

/// Serves `app` on `listener` (HTTPS when `tls` is given) with `config`'s limits until
/// `shutdown` resolves, then shuts down within `config.shutdown_timeout`. `server` names the
/// listener in logs and metrics (`admin`, a connector name).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    config: HttpServerConfig,
    server: impl Into<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server: String = server.into();
    let config = Arc::new(config);
    let conns = Arc::new(Semaphore::new(config.max_connections));
    let handshakes = Arc::new(Semaphore::new(config.max_tls_handshakes));
    let acceptor = tls.map(TlsAcceptor::from);
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set stays as small as the open connections.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = %server, error = %e, "Accept failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            ConnectionShed {
                server: &server,
                reason: ShedReason::ConnectionCap,
            }
            .emit();
            if acceptor.is_none() {
                // Non-blocking: a fresh socket's send buffer takes it, or the client gets a
                // plain close. Never awaits, so shedding cannot itself be held up.
                let _ = tcp.try_write(SHED_RESPONSE);
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, config, stop, acceptor, handshakes, server) = (
            app.clone(),
            config.clone(),
            stop.clone(),
            acceptor.clone(),
            handshakes.clone(),
            server.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(tcp, app, &config, stop).await,
                Some(acceptor) => {
                    let Ok(hs) = handshakes.try_acquire_owned() else {
                        ConnectionShed {
                            server: &server,
                            reason: ShedReason::HandshakeCap,
                        }
                        .emit();
                        return;
                    };
                    let tls = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = tokio::time::timeout(config.tls_handshake_timeout, acceptor.accept(tcp)) => r,
                    };
                    drop(hs);
                    match tls {
                        Ok(Ok(tls)) => serve_connection(tls, app, &config, stop).await,
                        Ok(Err(e)) => tracing::debug!(server, error = %e, "TLS handshake failed."),
                        Err(_) => tracing::debug!(server, "TLS handshake timed out."),
                    }
                }
            }
        });
    }
    drop(listener);
    stop.cancel();
    let open = tasks.len();
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            server = %server,
            open,
            left = tasks.len(),
            "Connections still open after shutdown_timeout; closing them."
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Serves one connection until it ends, or until `stop` (then gracefully: the in-flight
/// request finishes, the connection closes; the caller's deadline bounds it).
async fn serve_connection<I>(io: I, app: Router, config: &HttpServerConfig, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (request_timeout, body_timeout) = (config.request_timeout, config.body_timeout);
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let app = app.clone();
        async move {
            let req = req.map(|b| TimedBody::new(b, body_timeout));
            let resp = match tokio::time::timeout(request_timeout, app.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // Request heads are small here; hyper's 400 KB default buffer is more than any needs.
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn timed_out() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request body that fails once its deadline passed (a trickling client cannot hold a
/// handler, and with it a connection permit, for longer than `body_timeout`).
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The error a [`TimedBody`] reports past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within body_timeout")]
pub struct BodyTimeout;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn fast() -> HttpServerConfig {
        HttpServerConfig {
            header_read_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(600),
            max_connections: 8,
            max_tls_handshakes: 4,
            tls_handshake_timeout: Duration::from_millis(300),
            shutdown_timeout: Duration::from_millis(300),
        }
    }

    async fn start(config: HttpServerConfig) -> (std::net::SocketAddr, CancellationToken) {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|b: Bytes| async move { b.len().to_string() }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(serve(l, None, app, config, "test", async move {
            s.cancelled().await
        }));
        (addr, stop)
    }

    /// Reads until EOF (or the 5 s guard) and returns what came.
    async fn read_all(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn partial_head_is_disconnected() {
        let (addr, _stop) = start(fast()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // hyper answers 408 or just closes; either way the socket reaches EOF, well before
        // the 5 s guard that read_all applies.
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "the server closed the connection");
    }

    #[tokio::test]
    async fn trickling_body_fails_and_whole_request_is_bounded() {
        let (addr, _stop) = start(fast()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let got = read_all(&mut s).await;
        assert!(!got.starts_with("HTTP/1.1 200"), "{got}");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_all(&mut s).await;
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    }

    #[tokio::test]
    async fn over_the_cap_is_shed_with_503_and_capacity_returns() {
        let mut cfg = fast();
        cfg.max_connections = 2;
        cfg.max_tls_handshakes = 1;
        cfg.header_read_timeout = Duration::from_secs(30);
        let (addr, _stop) = start(cfg).await;
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        // Let the server accept both before the third arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = read_all(&mut c).await;
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        drop((a, b));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_all(&mut d).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }

    #[tokio::test]
    async fn shutdown_has_a_hard_deadline() {
        let (addr, stop) = start(fast()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        // The slow handler would take 30 s; the connection ends long before the guard.
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection dropped at the shutdown deadline");
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    #[test]
    fn validation_names_the_key() {
        HttpServerConfig::default().validate("p.http").unwrap();
        let c = HttpServerConfig {
            max_connections: 0,
            ..HttpServerConfig::default()
        };
        let e = c.validate("p.http").unwrap_err().to_string();
        assert!(e.contains("p.http.max_connections"), "{e}");
        let c = HttpServerConfig {
            header_read_timeout: Duration::from_millis(1),
            ..HttpServerConfig::default()
        };
        let e = c.validate("p.http").unwrap_err().to_string();
        assert!(e.contains("p.http.header_read_timeout"), "{e}");
        let mut c = HttpServerConfig::default();
        c.max_tls_handshakes = c.max_connections + 1;
        let e = c.validate("p.http").unwrap_err().to_string();
        assert!(e.contains("max_tls_handshakes"), "{e}");
        let c: HttpServerConfig = toml::from_str("header_read_timeout = \"5s\"").unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 512);
    }
}
