//! TLS to PostgreSQL, read from the `--db` URL as libpq reads it:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked |
//! | `verify-ca` | always | signed by a trusted root |
//! | `verify-full` | always | signed by a trusted root, for the URL's host |
//!
//! The trusted roots are `sslrootcert=FILE` (PEM), or the system's with
//! `sslrootcert=system` or none given. As in libpq, `prefer` and `require`
//! with a `sslrootcert` check the certificate as `verify-ca` does.
//! (`tokio-postgres` knows neither `sslrootcert` nor the `verify-*` modes:
//! they are taken out of the URL here, and its `sslmode` set to `require`.)

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;

/// What the URL asks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    System,
    File(String),
}

/// A `--db` URL's connection settings, with the TLS they ask for.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Target {
    /// Reads `url` (`postgres://USER@HOST:PORT/DB?sslmode=…&sslrootcert=…`,
    /// or libpq's `key=value` form), loading the roots it names.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let (rest, mode, roots) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest.parse().context("the --db URL")?;
        let mode = mode.unwrap_or(Mode::Prefer);
        config.ssl_mode(match mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        // The roots the chain is checked to, if it is.
        let chain = match (mode, roots) {
            (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => None,
            (_, roots) => Some(roots.unwrap_or(Roots::System)),
        };
        let tls = client_config(chain.as_ref(), mode == Mode::VerifyFull)?;
        Ok(Target { config, tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls) })
    }
}

/// `url` with its password (if any) hidden, for messages.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let host_at = rest.find('/').unwrap_or(rest.len());
    match rest[..host_at].rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split_once(':').map_or(user, |(n, _)| n);
            format!("{scheme}://{name}:***@{host}{}", &rest[host_at..])
        }
        _ => url.to_owned(),
    }
}

/// `url` without `sslmode` and `sslrootcert`, and what they said.
fn take_tls_params(url: &str) -> anyhow::Result<(String, Option<Mode>, Option<Roots>)> {
    let (mut mode, mut roots) = (None, None);
    let mut read = |key: &str, value: String| -> anyhow::Result<bool> {
        match key {
            "sslmode" => {
                mode = Some(match value.as_str() {
                    "disable" => Mode::Disable,
                    // (libpq's `allow` tries without TLS first; without
                    // TLS or with it when offered is what `prefer` does.)
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => bail!(
                        "the --db URL's sslmode is {other:?}: it must be one of disable, prefer, require, \
                         verify-ca, verify-full"
                    ),
                });
                Ok(true)
            }
            "sslrootcert" => {
                roots = Some(if value == "system" { Roots::System } else { Roots::File(value) });
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let v = percent_decode(v).with_context(|| format!("the --db URL's {k}"))?;
                    if !read(k, v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        // `key=value` pairs apart by spaces (values quoted with spaces
        // inside are left to tokio-postgres, unread here).
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some((k, v)) if read(k, v.to_owned())? => {}
                _ => kept.push(pair),
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, roots))
}

/// `%XX` escapes of a URL's query value decoded (`+` stays `+`, as libpq has it).
fn percent_decode(v: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(v).decode_utf8().context("not UTF-8 once decoded")?.into_owned())
}

/// TLS that checks the server's certificate to `chain`'s roots, if any,
/// and its `name`.
fn client_config(chain: Option<&Roots>, name: bool) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS for the database")?;
    let algorithms = provider.signature_verification_algorithms;
    let chain = chain.map(|roots| webpki(roots, provider)).transpose()?;
    let verifier = Verifier { chain, name, algorithms };
    Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth())
}

fn webpki(roots: &Roots, provider: Arc<CryptoProvider>) -> anyhow::Result<Arc<WebPkiServerVerifier>> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect)
                    .with_context(|| format!("reading the --db URL's sslrootcert {path}"))?;
            if certs.is_empty() {
                bail!("the --db URL's sslrootcert {path} holds no certificate");
            }
            for c in certs {
                store.add(c).with_context(|| format!("a certificate of the --db URL's sslrootcert {path}"))?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!(
                    "this machine has no trusted root certificates to check the database's with: give the --db \
                     URL an sslrootcert=FILE"
                );
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .context("checking the database's certificate")
}

/// What of the server's certificate is checked: its chain to a trusted
/// root (`verify-ca`), and its name (`verify-full`), or neither (`prefer`
/// and `require` without roots, as libpq: the connection is encrypted, and
/// the server proves it holds its certificate's key, whoever signed it).
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_come_out_of_the_url() {
        let (rest, mode, roots) =
            take_tls_params("postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(mode, Some(Mode::VerifyFull));
        assert_eq!(roots, Some(Roots::File("/etc/ca.pem".into())));

        let (rest, mode, roots) = take_tls_params("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), mode, roots), ("postgres://u@h/db", Some(Mode::Require), None));

        let (rest, mode, _) = take_tls_params("host=h user=u sslmode=disable dbname=d").unwrap();
        assert_eq!((rest.as_str(), mode), ("host=h user=u dbname=d", Some(Mode::Disable)));

        let e = take_tls_params("postgres://h/db?sslmode=verify").unwrap_err().to_string();
        assert!(e.contains("must be one of disable, prefer, require, verify-ca, verify-full"), "{e}");
        let e = format!("{:#}", take_tls_params("postgres://h/db?sslrootcert=%ff").unwrap_err());
        assert!(e.contains("sslrootcert") && e.contains("UTF-8"), "{e}");
        assert_eq!(without_password("postgres://u:p%40ss@h:5/db?x=1"), "postgres://u:***@h:5/db?x=1");
        assert_eq!(without_password("postgres://u@h/db"), "postgres://u@h/db");
        // Missing roots are named.
        let e = format!(
            "{:#}",
            Target::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem").err().unwrap()
        );
        assert!(e.contains("sslrootcert /nonexistent.pem"), "{e}");
    }

    /// A self-signed certificate for `san` (`DNS:name` or `IP:address`) and
    /// its key, made with openssl in `dir`; `None` without openssl.
    fn certificate(dir: &std::path::Path, name: &str, san: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={name}"), "-addext", &format!("subjectAltName={san}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        made.then_some((cert, key))
    }

    #[test]
    fn connections_check_what_the_url_asks() {
        let test = "connections_check_what_the_url_asks";
        let tmp = tempfile::tempdir().unwrap();
        let (Some((cert, key)), Some((stranger, _))) =
            (certificate(tmp.path(), "db", "DNS:db.example"), certificate(tmp.path(), "other", "DNS:db.example"))
        else {
            return crate::testing::skip(test, "openssl cannot make a certificate here");
        };
        let Some(cluster) = crate::testing::PgCluster::start_tls(&cert, &key).unwrap() else {
            return crate::testing::skip(test, "no PostgreSQL binaries (initdb, pg_ctl)");
        };
        use crate::meta::postgres::PostgresStore;
        // The cluster takes TLS only: its URL on 127.0.0.1, and by the
        // certificate's name (the address given apart).
        let by_address = cluster.fresh_db().unwrap();
        let by_name = by_address.replacen("127.0.0.1", "db.example", 1) + "?hostaddr=127.0.0.1";
        let root = format!("sslrootcert={}", cert.display());
        let connect = |url: String| PostgresStore::connect(&url).map(drop).map_err(|e| format!("{e:#}"));

        // The certificate checked to its root and its name: the schema made
        // over TLS.
        connect(format!("{by_name}&sslmode=verify-full&{root}")).unwrap();
        // Encrypted without a check: `require`, and `prefer` (the default).
        connect(format!("{by_address}?sslmode=require")).unwrap();
        connect(by_address.clone()).unwrap();
        // `verify-ca` checks the root, not the name.
        connect(format!("{by_address}?sslmode=verify-ca&{root}")).unwrap();

        // Without TLS the cluster refuses.
        let e = connect(format!("{by_address}?sslmode=disable")).unwrap_err();
        assert!(e.contains("no encryption"), "{e}");
        // A certificate for another name, or from another root, is refused.
        let e = connect(format!("{by_address}?sslmode=verify-full&{root}")).unwrap_err();
        assert!(e.contains("invalid peer certificate: certificate not valid for name"), "{e}");
        let e = connect(format!("{by_name}&sslmode=verify-full&sslrootcert={}", stranger.display())).unwrap_err();
        assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
        // `require` with a root checks it, as libpq does.
        let e = connect(format!("{by_address}?sslmode=require&sslrootcert={}", stranger.display())).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
    }
}
