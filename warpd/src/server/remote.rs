//! Remote callers: the same gRPC service on TCP, with TLS and mutual
//! authentication.
//!
//! warpd does the TLS handshake itself (rustls) so that it can bound how
//! many run at once and log why one failed. rustls checks a client
//! certificate against the configured CA (signature, validity dates, the
//! client-auth purpose) during the handshake, so a plain-text client, a
//! certificate of another CA or an expired one never reaches the service:
//! the log says which it was. Each connection that gets through carries
//! its certificate to the service as connection info, and each request is
//! mapped to what the certificate may do: the first `[[remote.client]]`
//! whose name it is valid for (a DNS subjectAltName), acting as that uid or
//! as an operator; a certificate the configuration does not name is
//! refused every request. What only a local caller can do (record, which
//! runs a program as the caller; gc and shutdown) is refused to every
//! remote one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::{Request, Status};

use crate::config::{Access, Client, Remote};

/// How long a connection may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many handshakes may be in progress at once; connections beyond are
/// closed at once (the authenticated ones are not counted).
const MAX_HANDSHAKES: usize = 64;

/// Why the remote listener cannot be set up (at start).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot read remote.{field} {}: {source}", path.display())]
    Read { field: &'static str, path: PathBuf, source: io::Error },
    #[error("remote.{field} {}: {what}", path.display())]
    Invalid { field: &'static str, path: PathBuf, what: String },
}

/// The TLS settings of `remote`, its files read and checked.
pub fn tls_config(remote: &Remote) -> Result<Arc<ServerConfig>, RemoteError> {
    let read = |field: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| RemoteError::Read { field, path: path.to_owned(), source })
    };
    let invalid =
        |field: &'static str, path: &Path, what: String| RemoteError::Invalid { field, path: path.to_owned(), what };
    let certs = |field: &'static str, path: &Path| {
        let pem = read(field, path)?;
        let all: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match all {
            Ok(all) if !all.is_empty() => Ok(all),
            Ok(_) => Err(invalid(field, path, "holds no PEM certificate".into())),
            Err(e) => Err(invalid(field, path, format!("is not PEM certificates ({e})"))),
        }
    };
    let chain = certs("cert", &remote.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read("key", &remote.key)?)
        .map_err(|e| invalid("key", &remote.key, format!("holds no PEM private key ({e})")))?;
    let mut roots = RootCertStore::empty();
    for ca in certs("client_ca", &remote.client_ca)? {
        roots.add(ca).map_err(|e| invalid("client_ca", &remote.client_ca, format!("is not a CA certificate ({e})")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| invalid("client_ca", &remote.client_ca, e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("cert", &remote.cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| invalid("key", &remote.key, format!("does not go with remote.cert: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A remote caller: the configured client its certificate matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCaller {
    pub name: String,
    pub access: Access,
}

/// What the service learns of a TLS connection (a request extension).
#[derive(Clone, Debug)]
pub struct RemoteInfo {
    pub peer: SocketAddr,
    /// The configured client its certificate matched; `None`: none.
    pub caller: Option<RemoteCaller>,
}

/// Who a request came from over TLS: `None` for a request that did not
/// (the unix socket); an error for a certificate no client names.
pub fn caller<T>(request: &Request<T>) -> Option<Result<RemoteCaller, Status>> {
    let info = request.extensions().get::<RemoteInfo>()?;
    Some(info.caller.clone().ok_or_else(|| {
        Status::permission_denied(
            "the client certificate names no client of this warpd's configuration ([[remote.client]] name)",
        )
    }))
}

/// The first of `clients` that certificate `leaf` is valid for.
pub fn match_client(leaf: &CertificateDer<'_>, clients: &[Client]) -> Option<RemoteCaller> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    clients.iter().find_map(|client| {
        let name = ServerName::try_from(client.name.as_str()).ok()?;
        cert.verify_is_valid_for_subject_name(&name)
            .is_ok()
            .then(|| RemoteCaller { name: client.name.clone(), access: client.access })
    })
}

/// An authenticated TLS connection, as tonic serves it; counted against
/// its client's bound while it is open.
pub struct RemoteStream {
    tls: TlsStream<TcpStream>,
    info: RemoteInfo,
    _open: OpenConnection,
}

/// Open connections per client name ("" for certificates no client names).
type OpenCounts = Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// One open connection of a client; uncounted when dropped.
struct OpenConnection {
    client: String,
    counts: OpenCounts,
}

impl OpenConnection {
    /// Counts a connection of `client`, unless it holds `max` already.
    fn admit(counts: &OpenCounts, client: &str, max: usize) -> Option<OpenConnection> {
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        let open = c.entry(client.to_string()).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(OpenConnection { client: client.to_string(), counts: Arc::clone(counts) })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = c.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.client);
            }
        }
    }
}

impl tonic::transport::server::Connected for RemoteStream {
    type ConnectInfo = RemoteInfo;
    fn connect_info(&self) -> RemoteInfo {
        self.info.clone()
    }
}

impl AsyncRead for RemoteStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for RemoteStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// Accepts on `listener`, does each handshake (at most `MAX_HANDSHAKES` at
/// once, each within `HANDSHAKE_TIMEOUT`) and yields the connections that
/// authenticated, at most `max_per_client` open at once for each client
/// (certificates no client names share one bound); a failed or refused
/// one is logged with its reason.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    clients: Vec<Client>,
    max_per_client: usize,
) -> impl tokio_stream::Stream<Item = io::Result<RemoteStream>> {
    let (tx, rx) = mpsc::channel(16);
    let counts = OpenCounts::default();
    let acceptor = TlsAcceptor::from(tls);
    let clients = Arc::new(clients);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                // The server is gone (the daemon stops): stop listening.
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a remote connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                tracing::warn!(%peer, max = MAX_HANDSHAKES, "too many TLS handshakes in progress: connection closed");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, clients, tx, counts) =
                (acceptor.clone(), Arc::clone(&clients), tx.clone(), Arc::clone(&counts));
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, reason = %e, "remote connection refused in the TLS handshake");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, secs = HANDSHAKE_TIMEOUT.as_secs(), "remote connection closed: no TLS handshake in time");
                        return;
                    }
                };
                drop(permit);
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
                let caller = leaf.as_ref().and_then(|leaf| match_client(leaf, &clients));
                let name = caller.as_ref().map_or("", |c| c.name.as_str());
                let Some(open) = OpenConnection::admit(&counts, name, max_per_client) else {
                    tracing::warn!(%peer, client = name, max = max_per_client, "a remote client holds the most connections allowed: connection closed");
                    return;
                };
                match &caller {
                    Some(c) => tracing::info!(%peer, client = %c.name, "remote client connected"),
                    None => {
                        tracing::warn!(%peer, "remote certificate names no configured client: its requests are refused")
                    }
                }
                let _ = tx.send(Ok(RemoteStream { tls, info: RemoteInfo { peer, caller }, _open: open })).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_is_bounded_and_a_closed_connection_frees_its_place() {
        let counts = OpenCounts::default();
        let a1 = OpenConnection::admit(&counts, "alice", 2).unwrap();
        let _a2 = OpenConnection::admit(&counts, "alice", 2).unwrap();
        assert!(OpenConnection::admit(&counts, "alice", 2).is_none(), "a third is refused");
        let _b = OpenConnection::admit(&counts, "bob", 2).expect("another client's bound is its own");
        drop(a1);
        assert!(OpenConnection::admit(&counts, "alice", 2).is_some(), "a closed one frees its place");
    }
}
