//! TLS for the HTTP listeners: loading the certificate, key and client CA files into a
//! rustls configuration, with errors that name the file and the problem.
//!
//! The files are read each time a configuration is built: the supervisor builds one at
//! start-up and on every HUP only to check the files (so a broken certificate is refused
//! before any worker is replaced), and each new worker builds its own, so a HUP after the
//! files were replaced serves the new certificate on new connections while the old
//! workers finish theirs with the old one.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::http::conn::Socket;

/// Whether clients must present a certificate (`--cert-reqs`, Python's `ssl.CERT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for (the default, as in gunicorn and uvicorn).
    None,
    /// A certificate is asked for; one that is sent must be valid, none is fine.
    Optional,
    /// A valid certificate is required to connect.
    Required,
}

impl ClientAuth {
    /// Parses `none`, `optional`, `required`, or gunicorn's `0`, `1`, `2`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "none" | "0" | "cert_none" => Ok(ClientAuth::None),
            "optional" | "1" | "cert_optional" => Ok(ClientAuth::Optional),
            "required" | "2" | "cert_required" => Ok(ClientAuth::Required),
            _ => Err(format!(
                "--cert-reqs {text:?}: expected none, optional or required (or 0, 1, 2)"
            )),
        }
    }
}

/// Where the TLS files are and how clients are checked.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// `--certfile`: the certificate chain, PEM, leaf first.
    pub certfile: PathBuf,
    /// `--keyfile`: the private key, PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub keyfile: PathBuf,
    /// `--ca-certs`: CA certificates (PEM) that client certificates must chain to.
    pub ca_certs: Option<PathBuf>,
    /// `--cert-reqs`.
    pub client_auth: ClientAuth,
}

/// Builds the rustls configuration from the files, offering `alpn` (most preferred first).
pub fn load(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certificates(&settings.certfile, "--certfile")?;
    let key = read_key(&settings.keyfile)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match (&settings.ca_certs, settings.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(
                "--cert-reqs optional or required needs --ca-certs to check client \
                        certificates against"
                    .into(),
            )
        }
        (Some(ca_path), auth) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates(ca_path, "--ca-certs")? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "--ca-certs {}: unusable CA certificate: {e}",
                        ca_path.display()
                    )
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("--ca-certs {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "--keyfile {}: the private key does not match the certificate in --certfile {}",
            settings.keyfile.display(),
            settings.certfile.display()
        ),
        other => format!(
            "--certfile {} / --keyfile {}: {other}",
            settings.certfile.display(),
            settings.keyfile.display()
        ),
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn describe_pem_error(error: pem::Error) -> String {
    match error {
        pem::Error::Io(error) if error.kind() == io::ErrorKind::NotFound => "no such file".into(),
        pem::Error::Io(error) => format!("cannot read it: {error}"),
        other => format!("not valid PEM: {other:?}"),
    }
}

fn read_certificates(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |why: String| format!("{option} {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(describe_pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(describe_pem_error(e)))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate (-----BEGIN CERTIFICATE-----) in the file".into(),
        ));
    }
    for cert in &certs {
        // Catches a PEM block whose content is not a certificate at all.
        webpki_check(cert).map_err(fail)?;
    }
    Ok(certs)
}

/// A certificate rustls could parse as X.509 (rustls itself checks only at handshake).
fn webpki_check(cert: &CertificateDer<'_>) -> Result<(), String> {
    rustls::server::ParsedCertificate::try_from(cert)
        .map(drop)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => {
                "no private key in the file (expected PEM: PKCS#8 \"PRIVATE KEY\", PKCS#1 \
                 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")"
                    .to_string()
            }
            other => describe_pem_error(other),
        };
        format!("--keyfile {}: {why}", path.display())
    })
}

/// Shows TLS listeners as `https://` in the log and makes `wsgi.url_scheme` `https`.
pub fn label_listeners(
    listeners: &mut [(crate::server::bind::Listener, crate::gateway::ListenerInfo)],
    tls: bool,
) {
    if !tls {
        return;
    }
    for (_, info) in listeners {
        info.url_scheme = "https";
        if let Some(address) = info.display.strip_prefix("http://") {
            info.display = format!("https://{address}");
        }
    }
}

/// Completes the TLS handshake on `stream` within `timeout`. `None` if it failed (logged).
pub async fn accept<S>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    timeout: Duration,
    peer: &crate::gateway::Peer,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::info!("TLS handshake with {} failed: {error}", peer_label(peer));
            None
        }
        Err(_) => {
            tracing::info!(
                "TLS handshake with {} not complete within --header-timeout",
                peer_label(peer)
            );
            None
        }
    }
}

fn peer_label(peer: &crate::gateway::Peer) -> String {
    match peer {
        crate::gateway::Peer::Tcp(address) => address.to_string(),
        crate::gateway::Peer::Unix => "unix socket".into(),
    }
}

/// The protocol the client chose by ALPN, if any.
pub fn negotiated_protocol<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

impl<S> Socket for tokio_rustls::server::TlsStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static,
{
    /// No sendfile(2) under TLS: the file is read and written through the encryption.
    async fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> io::Result<u64> {
        crate::http::writer::copy_file(self, file, offset, len, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_reqs_names_and_numbers() {
        assert_eq!(ClientAuth::parse("none"), Ok(ClientAuth::None));
        assert_eq!(ClientAuth::parse("0"), Ok(ClientAuth::None));
        assert_eq!(ClientAuth::parse("Optional"), Ok(ClientAuth::Optional));
        assert_eq!(ClientAuth::parse("2"), Ok(ClientAuth::Required));
        assert!(ClientAuth::parse("3").unwrap_err().contains("--cert-reqs"));
    }

    #[test]
    fn missing_files_are_named() {
        let settings = TlsSettings {
            certfile: "/nonexistent/cert.pem".into(),
            keyfile: "/nonexistent/key.pem".into(),
            ca_certs: None,
            client_auth: ClientAuth::None,
        };
        let error = load(&settings, &[]).unwrap_err();
        assert_eq!(error, "--certfile /nonexistent/cert.pem: no such file");
    }
}
