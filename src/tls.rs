//! The process's one TLS crypto provider: ring, through rustls. The engine client (bollard)
//! and the registry clients (reqwest, under oci-client) are built without a provider of their
//! own, so every client is made after [`install`].

/// Makes ring the process's crypto provider (once; later calls change nothing).
pub(crate) fn install() {
    // rustls refuses a second provider; the first one stays, which is this one.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
