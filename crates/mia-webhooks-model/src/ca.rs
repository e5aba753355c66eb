//! A webhook's own certificate authority, trusted for that webhook only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::{self, PemObject, SectionKind};

use crate::ValidationError;

const FIELD: &str = "caCertificate";

/// The largest CA input accepted, in bytes (PEM text or its base64).
pub const MAX_CA_LEN: usize = 64 * 1024;

/// One or more X.509 certificates, stored as PEM.
///
/// Accepted input: PEM text with one or more `CERTIFICATE` sections, or the base64 of such PEM
/// (what a browser form or a YAML file often carries). Every certificate must parse as X.509;
/// anything else in the PEM (a private key pasted by mistake, above all) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaCertificate {
    pem: String,
    ders: Vec<Vec<u8>>,
}

/// Any PEM section, so that non-certificate sections can be reported instead of skipped.
struct Section(SectionKind, Vec<u8>);

impl PemObject for Section {
    fn from_pem(kind: SectionKind, der: Vec<u8>) -> Option<Self> {
        Some(Section(kind, der))
    }
}

impl CaCertificate {
    /// Validates PEM or base64-of-PEM input; errors name the field `caCertificate`.
    pub fn new(input: &str) -> Result<Self, ValidationError> {
        if input.trim().is_empty() {
            return Err(invalid("caCertificate must not be empty"));
        }
        if input.len() > MAX_CA_LEN {
            return Err(invalid(format!(
                "caCertificate is {} bytes long; the limit is {MAX_CA_LEN}",
                input.len()
            )));
        }
        if input.contains("-----BEGIN") {
            return Self::from_pem(input.as_bytes());
        }
        let compact: String = input.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = STANDARD.decode(compact.as_bytes()).map_err(|_| {
            invalid("caCertificate must be PEM (-----BEGIN CERTIFICATE-----) or base64 of PEM")
        })?;
        if !decoded.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(invalid(
                "caCertificate is base64, but what it decodes to is not PEM",
            ));
        }
        Self::from_pem(&decoded)
    }

    fn from_pem(pem_bytes: &[u8]) -> Result<Self, ValidationError> {
        let mut ders = Vec::new();
        for (index, section) in Section::pem_slice_iter(pem_bytes).enumerate() {
            let Section(kind, der) = section.map_err(|e| pem_error(&e))?;
            if kind != SectionKind::Certificate {
                return Err(invalid(format!(
                    "caCertificate section {} is a {}, not a CERTIFICATE; paste only certificates{}",
                    index + 1,
                    kind_name(kind),
                    if is_key(kind) {
                        " (never a private key)"
                    } else {
                        ""
                    },
                )));
            }
            match x509_parser::parse_x509_certificate(&der) {
                Ok(([], _)) => ders.push(der),
                Ok(_) => {
                    return Err(invalid(format!(
                        "caCertificate certificate {} has trailing bytes after its X.509 structure",
                        index + 1
                    )));
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "caCertificate certificate {} is not valid X.509: {e}",
                        index + 1
                    )));
                }
            }
        }
        if ders.is_empty() {
            return Err(invalid("caCertificate contains no certificate"));
        }
        let pem = ders.iter().map(|der| encode_pem(der)).collect();
        Ok(CaCertificate { pem, ders })
    }

    /// The certificates as PEM, one `CERTIFICATE` section each, normalized.
    pub fn as_pem(&self) -> &str {
        &self.pem
    }

    /// The certificates as DER.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.ders.iter().map(Vec::as_slice)
    }
}

fn encode_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn is_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

fn kind_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        _ => "non-certificate section",
    }
}

fn pem_error(err: &pem::Error) -> ValidationError {
    let problem = match err {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => "a PEM section's body is not valid base64".to_owned(),
        other => format!("the PEM is malformed ({other:?})"),
    };
    invalid(format!("caCertificate: {problem}"))
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::invalid(FIELD, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_ca() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["test-ca".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn check_err(input: &str, needle: &str) {
        let err = CaCertificate::new(input).unwrap_err();
        assert_eq!(err.field(), "caCertificate", "{input:?}");
        assert!(
            err.message().contains(needle),
            "{input:?}: {}",
            err.message()
        );
    }

    #[test]
    fn accepts_pem_and_base64_of_pem() {
        let (pem_a, _) = make_ca();
        let (pem_b, _) = make_ca();
        let bundle = format!("{pem_a}\n{pem_b}");
        let ca = CaCertificate::new(&bundle).unwrap();
        assert_eq!(ca.certificates().count(), 2);
        let from_b64 = CaCertificate::new(&STANDARD.encode(bundle.as_bytes())).unwrap();
        assert_eq!(from_b64, ca);
        // The stored PEM is itself valid input and round-trips.
        assert_eq!(CaCertificate::new(ca.as_pem()).unwrap(), ca);
    }

    #[test]
    fn rejects_what_is_not_a_certificate() {
        let (pem, key) = make_ca();
        check_err("", "must not be empty");
        check_err("   \n", "must not be empty");
        check_err("hello world", "PEM");
        check_err(&STANDARD.encode("just text"), "not PEM");
        check_err(&key, "PRIVATE KEY");
        check_err(&format!("{pem}{key}"), "never a private key");
        check_err(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not valid X.509",
        );
        check_err(
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "base64",
        );
        check_err("-----BEGIN CERTIFICATE-----\nMIIB\n", "END");
        // One bad certificate spoils a bundle of good ones, wherever it is.
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (other, _) = make_ca();
        check_err(&format!("{pem}{bad}{other}"), "not valid X.509");
        check_err(&format!("{bad}{pem}"), "not valid X.509");
        check_err(
            &STANDARD.encode(format!("{pem}{other}{bad}")),
            "not valid X.509",
        );
        check_err(&"A".repeat(MAX_CA_LEN + 1), "limit");
    }
}
