//! Optional TLS for the receiver: the PEM files loaded into a rustls server config and a
//! [`TlsListener`] pairing it with a bound socket; the hardened server in
//! [`connector_core::http_server`] runs the handshakes (capped, with a timeout).
//! rustls with the aws-lc-rs provider (the same one reqwest uses), TLS 1.2 and 1.3.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::error::Error;

/// Loads a PEM certificate chain and private key into a rustls server config.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Core(connector_core::CoreError::config(
            format!("sources.fhir_push.<name>.tls.{what}"),
            e.to_string(),
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| bad("cert_path", &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cert_path", &e))?;
    if certs.is_empty() {
        return Err(bad("cert_path", &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad("key_path", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("cert_path", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("key_path", &e))?;
    Ok(Arc::new(config))
}

/// A bound TCP listener and the TLS config to serve it with. Handshakes run in
/// [`connector_core::http_server`], each in its connection's own task, capped and with a
/// timeout, so a slow or hostile client cannot hold up the others.
#[derive(Debug)]
pub struct TlsListener {
    tcp: TcpListener,
    config: Arc<ServerConfig>,
}

impl TlsListener {
    /// Wraps a bound TCP listener.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        Ok(TlsListener { tcp, config })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// The listener and the config, for [`connector_core::http_server::serve`].
    pub fn into_parts(self) -> (TcpListener, Arc<ServerConfig>) {
        (self.tcp, self.config)
    }
}
