//! TLS for the PostgreSQL publish, with libpq's `sslmode` meanings.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and no certificate checks; libpq users
//! write `verify-ca`/`verify-full` with `sslrootcert`. So the connection string's TLS settings are
//! taken out of it here ([`TlsSettings::split`]) and turned into a rustls configuration:
//!
//! | `sslmode` | TLS | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless a root certificate is given or `~/.postgresql/root.crt` exists (then as `verify-ca`, as libpq does) |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert` and names the host |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq; `sslrootcert=system` uses the
//! operating system's trusted roots.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;

use crate::error::{LakehouseError, Result};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, certificate not checked.
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, the certificate chains to the root certificate.
    VerifyCa,
    /// TLS, the certificate chains to the root certificate and names the host.
    VerifyFull,
}

/// The TLS settings of a connection string, and the string without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: TlsMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<String>,
}

impl TlsSettings {
    /// Takes `sslmode` and `sslrootcert` out of a key=value connection string (libpq's quoting:
    /// single quotes, backslash escapes). Errors name the setting, never the string.
    pub fn split(dsn: &str) -> Result<(String, TlsSettings)> {
        if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            return Self::split_url(dsn);
        }
        let mut kept = Vec::new();
        let mut settings = TlsSettings { mode: TlsMode::Prefer, root_cert: None };
        for (key, value, text) in pairs(dsn)? {
            match key.as_str() {
                "sslmode" => {
                    settings.mode = match value.as_str() {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        _ => return Err(LakehouseError::Postgres("sslmode must be disable, prefer, require, verify-ca or verify-full".into())),
                    }
                }
                "sslrootcert" => settings.root_cert = Some(value),
                _ => kept.push(text),
            }
        }
        Ok((kept.join(" "), settings))
    }

    /// [`TlsSettings::split`] for the URL form (`postgresql://host/db?sslmode=require`).
    fn split_url(dsn: &str) -> Result<(String, TlsSettings)> {
        let mut url = url::Url::parse(dsn).map_err(|_| LakehouseError::Postgres("the connection string is not a valid postgresql:// URL".into()))?;
        let mut text = Vec::new();
        let mut kept = Vec::new();
        // The other parameters are kept exactly as written (re-encoding would turn `%20` into `+`,
        // which tokio-postgres reads literally).
        for piece in url.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            match url::form_urlencoded::parse(piece.as_bytes()).next() {
                Some((key, value)) if key == "sslmode" || key == "sslrootcert" => {
                    text.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
                }
                _ => kept.push(piece.to_owned()),
            }
        }
        let (_, settings) = Self::split(&text.join(" "))?;
        let query = kept.join("&");
        url.set_query(if kept.is_empty() { None } else { Some(&query) });
        Ok((url.to_string(), settings))
    }

    /// tokio-postgres's mode for these settings.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The certificate check these settings ask for: as in libpq, `require` checks the chain
    /// when a root certificate is given or `~/.postgresql/root.crt` exists.
    fn effective_mode(&self) -> TlsMode {
        let default_root = || std::env::var_os("HOME").is_some_and(|home| PathBuf::from(home).join(".postgresql/root.crt").exists());
        match self.mode {
            TlsMode::Require if self.root_cert.is_some() || default_root() => TlsMode::VerifyCa,
            mode => mode,
        }
    }

    /// The rustls configuration for these settings.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mode = self.effective_mode();
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| LakehouseError::Postgres(format!("cannot use the root certificates: {e}")))?;
                if mode == TlsMode::VerifyCa { Arc::new(AnyName(webpki)) } else { webpki }
            }
        };
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LakehouseError::Postgres(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        if self.root_cert.as_deref() == Some("system") {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(LakehouseError::Postgres("sslrootcert=system: this system has no trusted root certificates".into()));
            }
            return Ok(roots);
        }
        let path = match &self.root_cert {
            Some(path) => PathBuf::from(path),
            None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".postgresql/root.crt"),
        };
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect())
            .map_err(|e| LakehouseError::Postgres(format!(
                "sslmode=verify-ca/verify-full needs the server's root certificate: cannot read sslrootcert {shown} ({e}); give sslrootcert=<PEM file> or sslrootcert=system"
            )))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(LakehouseError::Postgres(format!("sslrootcert {shown} holds no usable certificate")));
        }
        Ok(roots)
    }
}

/// The `key=value` pairs of a libpq connection string, each with its text as written.
fn pairs(dsn: &str) -> Result<Vec<(String, String, String)>> {
    let bad = |what: &str| LakehouseError::Postgres(format!("the connection string is not in libpq's key=value form ({what})"));
    let mut out = Vec::new();
    let mut chars = dsn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(bad("a setting without '='"));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let mut end = dsn.len();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\\')) => value.push(chars.next().ok_or_else(|| bad("a backslash at the end"))?.1),
                    Some((i, '\'')) => {
                        end = i + 1;
                        break;
                    }
                    Some((_, c)) => value.push(c),
                    None => return Err(bad("an unclosed quote")),
                }
            }
        } else {
            while let Some((i, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                end = i + c.len_utf8();
                if c == '\\' {
                    let (j, escaped) = chars.next().ok_or_else(|| bad("a backslash at the end"))?;
                    value.push(escaped);
                    end = j + escaped.len_utf8();
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                end = chars.peek().map_or(dsn.len(), |(i, _)| *i);
            }
        }
        out.push((key, value, dsn[start..end].to_owned()));
    }
    Ok(out)
}

/// `require`/`prefer`: TLS against eavesdropping, the server not authenticated (libpq's meaning;
/// the handshake signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], name: &ServerName<'_>, ocsp: &[u8], now: UnixTime) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_the_connection_string() {
        let (rest, tls) = TlsSettings::split("host=db  sslmode=verify-full sslrootcert='/etc/my ca.pem' password='a b\\'c' dbname=bi").unwrap();
        assert_eq!(rest, "host=db password='a b\\'c' dbname=bi");
        assert_eq!(tls, TlsSettings { mode: TlsMode::VerifyFull, root_cert: Some("/etc/my ca.pem".into()) });
        let (rest, tls) = TlsSettings::split("host=db user=bi").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("host=db user=bi", TlsMode::Prefer));
        let (_, tls) = TlsSettings::split("sslmode = require host=db").unwrap();
        assert_eq!(tls.mode, TlsMode::Require);
        let (rest, _) = TlsSettings::split("password=ab\\  dbname=x sslmode=disable").unwrap();
        assert_eq!(rest, "password=ab\\  dbname=x", "an escaped last character stays in the value");
        let bad = TlsSettings::split("host=db password=SECRET sslmode=sometimes").unwrap_err().to_string();
        assert!(bad.contains("sslmode") && !bad.contains("SECRET"), "{bad}");
        let (rest, tls) = TlsSettings::split("postgresql://bi:pw@db:5432/gold?sslmode=verify-ca&sslrootcert=%2Fca.pem&options=-c%20search_path%3Dx").unwrap();
        assert_eq!(rest, "postgresql://bi:pw@db:5432/gold?options=-c%20search_path%3Dx");
        assert_eq!(tls, TlsSettings { mode: TlsMode::VerifyCa, root_cert: Some("/ca.pem".into()) });
        let bad = TlsSettings::split("host=db password='SECRET").unwrap_err().to_string();
        assert!(bad.contains("quote") && !bad.contains("SECRET"), "{bad}");
    }
}
