//! TLS for SSL listeners (issue 18): rustls on the ring provider, no OpenSSL. The
//! keystore is Kafka's PEM form (`ssl.keystore.type=PEM`: the certificate chain and
//! the private key in one file); with `ssl.client.auth=requested|required` clients
//! present certificates that chain to `ssl.truststore.location`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sluice_core::config::{ClientAuth, SslConfig};
use sluice_core::env::Stream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ssl.keystore.location {path}: {why}")]
    Keystore { path: String, why: String },
    #[error("ssl.truststore.location {path}: {why}")]
    Truststore { path: String, why: String },
    #[error("TLS settings refused: {0}")]
    Rustls(String),
}

/// The acceptor of SSL listeners, built once at start from the `ssl.*` configs.
pub fn acceptor(ssl: &SslConfig) -> Result<TlsAcceptor, TlsError> {
    let path = &ssl.keystore_location;
    let keystore = |why: String| TlsError::Keystore {
        path: path.clone(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| keystore(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| keystore(e.to_string()))?;
    if chain.is_empty() {
        return Err(keystore("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| keystore(e.to_string()))?;
    // ring lacks rustls' post-quantum key exchange (hence the deprecation); the
    // provider that has it, aws-lc-rs, needs cmake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let config = match (ssl.client_auth, &ssl.truststore_location) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(trust)) => {
            let truststore = |why: String| TlsError::Truststore {
                path: trust.clone(),
                why,
            };
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(trust).map_err(|e| truststore(e.to_string()))?
            {
                roots
                    .add(cert.map_err(|e| truststore(e.to_string()))?)
                    .map_err(|e| truststore(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(truststore("no CA certificate in the file".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(chain, key)
    .map_err(|e| keystore(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the server side of a handshake over an accepted connection.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: Box<dyn Stream>,
) -> io::Result<Box<dyn Stream>> {
    let tls = acceptor.accept(stream).await?;
    Ok(Box::new(tls))
}
