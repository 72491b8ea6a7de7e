//! Connections: a reader that decodes requests and runs their synchronous part in
//! order, and a writer that awaits each reply in order and writes it. Malformed input
//! closes that connection only.
//!
//! Back pressure, so that memory is bounded by configuration however fast clients
//! send: up to `connection.inflight.max` requests are pipelined per connection, and
//! request frames of all connections share `queued.max.request.bytes` (`budget`).
//! A connection idle for `connections.max.idle.ms` is closed, as in Kafka, which also
//! frees what a client that stalled mid-frame holds of that bound.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use sluice_core::env::{BoxFuture, Clock, Listener, Stream};
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::budget::RequestBudget;
use crate::frame::{self, FrameError, HeaderError};
use crate::handlers::{self, Reply};

#[derive(Debug, Error)]
pub enum ConnError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{api:?} v{version} is not supported (served: {served})")]
    Version {
        api: ApiKey,
        version: i16,
        served: String,
    },
    #[error("malformed {api:?} v{version} request: {why}")]
    Decode {
        api: ApiKey,
        version: i16,
        why: String,
    },
    #[error("cannot encode the {api:?} v{version} response: {why}")]
    Encode {
        api: ApiKey,
        version: i16,
        why: String,
    },
}

/// A reply on its way to the writer, in request order.
enum Pending {
    Encoded(Bytes),
    Later {
        correlation_id: i32,
        api_key: ApiKey,
        version: i16,
        reply: BoxFuture<'static, ResponseKind>,
    },
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    broker: Arc<Broker>,
    listener_name: Arc<str>,
    mut listener: Box<dyn Listener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let budget = RequestBudget::new(broker.config.queued_max_request_bytes);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "connection accepted");
                    broker.env.spawn(connection(
                        broker.clone(),
                        listener_name.clone(),
                        budget.clone(),
                        stream,
                        tls.clone(),
                        peer,
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    broker.env.clock.sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn connection(
    broker: Arc<Broker>,
    listener_name: Arc<str>,
    budget: RequestBudget,
    stream: Box<dyn Stream>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: String,
    mut shutdown: watch::Receiver<bool>,
) {
    // An SSL listener's connection starts with the TLS handshake, on this
    // connection's own task so a slow client never holds up the accept loop.
    let stream = match tls {
        None => stream,
        Some(acceptor) => {
            let handshake = crate::tls::accept(&acceptor, stream);
            let timeout = broker.env.clock.sleep(crate::tls::HANDSHAKE_TIMEOUT);
            tokio::select! {
                biased;
                r = handshake => match r {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                () = timeout => {
                    warn!(%peer, "TLS handshake not finished in time");
                    return;
                }
            }
        }
    };
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(broker.config.connection_inflight_max.max(1));
    let clock = broker.env.clock.clone();
    let activity = Arc::new(Activity::new(clock.as_ref()));
    let writer_peer = peer.clone();
    let (writer_activity, writer_clock) = (activity.clone(), clock.clone());
    broker.env.spawn(async move {
        if let Err(e) = write_replies(rx, wr, &writer_activity, writer_clock.as_ref()).await {
            debug!(peer = %writer_peer, error = %e, "write side closed");
        }
    });
    let max = broker.config.socket_request_max_bytes;
    let idle_for = Duration::from_millis(broker.config.connections_max_idle_ms);
    let idle = idle(clock.as_ref(), idle_for, &activity);
    tokio::pin!(idle);
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            f = budget.read_frame(&mut rd, max) => f,
            () = &mut idle => {
                debug!(%peer, "closing idle connection");
                break;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => {
                activity.touch(clock.as_ref());
                f
            }
            Ok(None) => break,
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        match process(&broker, &listener_name, &peer, frame) {
            Ok(Some(pending)) => {
                activity.unanswered.fetch_add(1, Ordering::AcqRel);
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        }
    }
    debug!(%peer, "connection closed");
}

/// What the idle check watches, kept up by the reader and the writer.
struct Activity {
    /// Requests read and not yet answered: a connection waiting on one is not idle.
    unanswered: AtomicUsize,
    /// When a frame was last read or an answer last written (the clock's monotonic
    /// milliseconds).
    last_ms: AtomicU64,
}

impl Activity {
    fn new(clock: &dyn Clock) -> Self {
        let activity = Activity {
            unanswered: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        };
        activity.touch(clock);
        activity
    }

    fn touch(&self, clock: &dyn Clock) {
        let now_ms = clock.monotonic().as_millis() as u64;
        self.last_ms.store(now_ms, Ordering::Release);
    }
}

/// Completes once the connection is idle (`connections.max.idle.ms`): nothing read or
/// written for `idle_for`, and nothing left to answer. One timer per connection,
/// re-armed for what is left of the period, not one per request.
async fn idle(clock: &dyn Clock, idle_for: Duration, activity: &Activity) {
    let mut wait = idle_for;
    loop {
        clock.sleep(wait).await;
        let last = Duration::from_millis(activity.last_ms.load(Ordering::Acquire));
        let quiet = clock.monotonic().saturating_sub(last);
        if activity.unanswered.load(Ordering::Acquire) > 0 {
            wait = idle_for;
        } else if quiet >= idle_for {
            return;
        } else {
            wait = idle_for - quiet;
        }
    }
}

async fn write_replies(
    mut rx: mpsc::Receiver<Pending>,
    wr: tokio::io::WriteHalf<Box<dyn Stream>>,
    activity: &Activity,
    clock: &dyn Clock,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(64 << 10, wr);
    while let Some(p) = rx.recv().await {
        let bytes = match p {
            Pending::Encoded(b) => b,
            Pending::Later {
                correlation_id,
                api_key,
                version,
                reply,
            } => {
                let response = reply.await;
                encode_response(correlation_id, api_key, version, &response)?
            }
        };
        out.write_all(&bytes).await?;
        activity.touch(clock);
        activity.unanswered.fetch_sub(1, Ordering::AcqRel);
        // Flush when nothing else is ready, so pipelined replies share a write.
        if rx.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await
}

/// Decodes and dispatches one request frame.
fn process(
    broker: &Arc<Broker>,
    listener_name: &Arc<str>,
    peer: &str,
    frame: Bytes,
) -> Result<Option<Pending>, ConnError> {
    let req = frame::parse_request(frame)?;
    let (api_key, version) = (req.api_key, req.header.request_api_version);
    let correlation_id = req.header.correlation_id;
    let Some((min, max)) = handlers::supported_versions(api_key) else {
        return Err(ConnError::Version {
            api: api_key,
            version,
            served: "none".into(),
        });
    };
    if api_key == ApiKey::ApiVersions && version > max {
        // A newer client: tell it what we serve, in the layout every version reads.
        let body = handlers::unsupported_version_response(correlation_id);
        return Ok(Some(Pending::Encoded(with_length(&body))));
    }
    if version < min || version > max {
        return Err(ConnError::Version {
            api: api_key,
            version,
            served: format!("{min}..={max}"),
        });
    }
    let mut body = req.body;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        RequestKind::decode(api_key, &mut body, version)
    }));
    let request = match decoded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(ConnError::Decode {
                api: api_key,
                version,
                why: e.to_string(),
            })
        }
        Err(_) => {
            return Err(ConnError::Decode {
                api: api_key,
                version,
                why: "decoder panicked".into(),
            })
        }
    };
    let client = handlers::Client {
        id: req
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        host: format!(
            "/{}",
            peer.rsplit_once(':')
                .map_or(peer, |(h, _)| h)
                .trim_matches(['[', ']'])
        ),
        listener: listener_name.clone(),
    };
    Ok(
        match handlers::handle(broker, &client, api_key, version, request) {
            Reply::Silent => None,
            Reply::Now(response) => Some(Pending::Encoded(
                encode_response(correlation_id, api_key, version, &response).map_err(|e| {
                    ConnError::Encode {
                        api: api_key,
                        version,
                        why: e.to_string(),
                    }
                })?,
            )),
            Reply::Later(reply) => Some(Pending::Later {
                correlation_id,
                api_key,
                version,
                reply,
            }),
        },
    )
}

fn with_length(body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + body.len());
    b.put_i32(body.len() as i32);
    b.put_slice(body);
    b.freeze()
}

/// Frames a response: size, header (v0, or v1 for flexible versions except
/// ApiVersions), body.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> std::io::Result<Bytes> {
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let mut b = BytesMut::with_capacity(256);
    b.put_i32(0);
    let encoded = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut b, header_version)
        .and_then(|()| response.encode(&mut b, version));
    encoded.map_err(|e| std::io::Error::other(format!("encode {api_key:?} v{version}: {e}")))?;
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    Ok(b.freeze())
}
