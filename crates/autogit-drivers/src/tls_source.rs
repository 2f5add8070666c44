//! Certificate sources besides ACME (`TLS_SOURCE` of `.env`): autogit's own CA for LAN-only
//! installs (`internal`) and a user-supplied chain and key (`file`). Both end in
//! [`crate::acme::store`], the same files the ACME path writes, so the ingress, `tls status`,
//! diagnose and the daemon's renewal see no difference.
//!
//! The internal CA: ECDSA P-256, 10 years, `pathlen:0`, name-constrained to BASE_DOMAIN (a
//! client that trusts it trusts nothing outside that domain). Its certificate is a plain file
//! (`<data>/tls/internal-ca.pem`, public); its private key PEM is handed back to the caller,
//! who keeps it sealed in the secret store, never on disk in plaintext. The decisions (names,
//! validity, when to make a new CA) are `autogit_core::tls`.

use crate::fsx;
use autogit_core::tls::{
    INTERNAL_CA_DAYS, INTERNAL_LEAF_DAYS, file_validity, first_uncovered, internal_ca_name,
    validity,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SerialNumber,
};
use secrecy::zeroize::Zeroizing;
use std::path::Path;

/// What is known of a CA certificate: its common name, expiry and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFacts {
    pub common_name: String,
    pub not_after: i64,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

fn time(t: i64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| format!("time {t}: {e}"))
}

fn serial() -> Result<SerialNumber, String> {
    let mut b = crate::secrets::random_bytes(16).map_err(|e| e.to_string())?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

/// A new internal CA for `base_domain`, valid from `now`: its certificate PEM and its private
/// key PEM (zeroed on drop).
pub fn new_ca(base_domain: &str, now: i64) -> Result<(String, Zeroizing<String>), String> {
    let domain = base_domain.trim_end_matches('.').to_ascii_lowercase();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("a key for the internal CA: {e}"))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, internal_ca_name(&domain));
    dn.push(DnType::OrganizationName, "autogit");
    p.distinguished_name = dn;
    let (nb, na) = validity(now, INTERNAL_CA_DAYS);
    p.not_before = time(nb)?;
    p.not_after = time(na)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(domain)],
        excluded_subtrees: Vec::new(),
    });
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("the internal CA's certificate: {e}"))?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// The facts of the first certificate of a PEM text.
pub fn ca_facts(pem: &str) -> Result<CaFacts, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("not a certificate: {e}"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CaFacts {
        common_name,
        not_after: cert.validity().not_after.timestamp(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Whether `key_pem` is the private key of the CA certificate `ca_pem`.
pub fn ca_key_matches(ca_pem: &str, key_pem: &str) -> bool {
    let (Ok(facts), Ok(key)) = (ca_facts(ca_pem), KeyPair::from_pem(key_pem)) else {
        return false;
    };
    rcgen::PublicKeyData::subject_public_key_info(&key) == facts.spki
}

/// Issues a certificate for `names` (the first is the subject's common name) signed by the CA
/// `ca_pem`/`ca_key_pem`, valid for [`INTERNAL_LEAF_DAYS`] from `now`: the chain (leaf, then
/// the CA) and the new leaf key, PEM.
pub fn issue_leaf(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: i64,
) -> Result<(String, Zeroizing<String>), String> {
    let ca_key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| format!("the internal CA's key: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| format!("the internal CA's certificate: {e}"))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("a certificate key: {e}"))?;
    let mut p = CertificateParams::new(names.to_vec())
        .map_err(|e| format!("the certificate's names: {e}"))?;
    let mut dn = DistinguishedName::new();
    let cn = names
        .iter()
        .find(|n| !n.starts_with("*."))
        .or(names.first())
        .cloned()
        .unwrap_or_default();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let (nb, na) = validity(now, INTERNAL_LEAF_DAYS);
    p.not_before = time(nb)?;
    p.not_after = time(na)?;
    p.serial_number = Some(serial()?);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| format!("signing the certificate: {e}"))?;
    let chain = format!("{}{}", cert.pem(), ca_pem);
    Ok((chain, Zeroizing::new(key.serialize_pem())))
}

/// A user-supplied chain and key that passed [`check_supplied`].
pub struct Supplied {
    pub chain: String,
    pub key: Zeroizing<String>,
    pub names: Vec<String>,
    pub not_after: i64,
    /// Days left when it expires within the warning period.
    pub expires_soon: Option<i64>,
}

impl std::fmt::Debug for Supplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supplied")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Checks a user-supplied chain (`TLS_CERT_FILE`, the leaf first) and key (`TLS_KEY_FILE`) at
/// `now`: both parse, the key is the leaf's, the leaf covers every one of `wanted`, and it is
/// valid now. Each error names the file and what is wrong; none carries the key.
pub fn check_supplied(
    cert_file: &Path,
    key_file: &Path,
    wanted: &[String],
    now: i64,
) -> Result<Supplied, String> {
    let cf = format!("TLS_CERT_FILE {}", cert_file.display());
    let kf = format!("TLS_KEY_FILE {}", key_file.display());
    let chain_bytes = fsx::read_bounded(cert_file, 1 << 20).map_err(|e| format!("{cf}: {e}"))?;
    let chain = String::from_utf8(chain_bytes).map_err(|_| format!("{cf}: not a PEM text file"))?;
    let key_bytes =
        Zeroizing::new(fsx::read_bounded(key_file, 64 << 10).map_err(|e| format!("{kf}: {e}"))?);
    let key = Zeroizing::new(
        String::from_utf8(key_bytes.to_vec()).map_err(|_| format!("{kf}: not a PEM text file"))?,
    );
    check_pair(chain, key, &cf, &kf, wanted, now)
}

/// Checks a PEM `chain` (the leaf first) and `key` at `now`, as [`check_supplied`] does; `cf`
/// and `kf` name where they came from in the errors ("TLS_CERT_FILE /etc/x.pem", "the chain
/// from extension `step`").
pub fn check_pair(
    chain: String,
    key: Zeroizing<String>,
    cf: &str,
    kf: &str,
    wanted: &[String],
    now: i64,
) -> Result<Supplied, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cf}: not a PEM certificate chain ({e})"))?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "{cf}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks, the server's certificate first)"
        ));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("{cf}: the first certificate does not parse: {e}"))?;
    let private = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
        format!(
            "{kf}: no private key in it (expected a PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` block)"
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|_| {
        format!("{kf}: an unsupported key type (RSA, ECDSA P-256/P-384 and Ed25519 are supported)")
    })?;
    drop(private);
    rustls::sign::CertifiedKey::new(certs.clone(), signing)
        .keys_match()
        .map_err(|_| {
            format!(
                "{kf} is not the private key of the certificate in {cf} (the first certificate of the chain must be the server's)"
            )
        })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if let Some(missing) = first_uncovered(&names, wanted) {
        let has = if names.is_empty() {
            "it names no DNS name".to_owned()
        } else {
            format!("it names {}", names.join(", "))
        };
        return Err(format!(
            "{cf} does not cover {missing}: {has} (it must cover {})",
            wanted.join(" and ")
        ));
    }
    let (nb, na) = (
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
    );
    let expires_soon = file_validity(nb, na, now).map_err(|e| format!("{cf}: {e}"))?;
    Ok(Supplied {
        chain,
        key,
        names,
        not_after: na,
        expires_soon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_of_the_internal_ca_passes_the_supplied_check_and_a_stranger_key_does_not() {
        let now = 1_800_000_000;
        let (ca, ca_key) = new_ca("example.test", now).unwrap();
        assert!(ca_key_matches(&ca, &ca_key));
        let facts = ca_facts(&ca).unwrap();
        assert_eq!(facts.common_name, "autogit internal CA example.test");
        assert_eq!(facts.not_after, now + INTERNAL_CA_DAYS * 86_400);
        let names = autogit_core::tls::certificate_names("example.test");
        let (chain, key) = issue_leaf(&ca, &ca_key, &names, now).unwrap();
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&c, &chain).unwrap();
        std::fs::write(&k, key.as_bytes()).unwrap();
        let s = check_supplied(&c, &k, &names, now).unwrap();
        assert_eq!(s.names, names);
        assert_eq!(s.expires_soon, None);
        assert!(!format!("{s:?}").contains("PRIVATE"));
        // The CA's key is not the leaf's.
        std::fs::write(&k, ca_key.as_bytes()).unwrap();
        let e = check_supplied(&c, &k, &names, now).unwrap_err();
        assert!(e.contains("is not the private key"), "{e}");
        assert!(!ca_key_matches(&ca, &key));
    }
}
