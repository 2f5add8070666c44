//! E-mail notifications over SMTP (RFC 5321) with STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN,
//! through lettre on rustls: the server's certificate is checked against Mozilla's roots, or
//! only against `ca_file` when one is given. The message is `core::email`'s; a failed
//! delivery names the server and the variables, never the password.

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use secrecy::{ExposeSecret, SecretString};

use crate::notify::Retry;

/// One `{type: email}` target of `health.notify`, its secrets read.
#[derive(Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    /// `false` only for a loopback host (the configuration refuses it otherwise).
    pub starttls: bool,
    pub from: String,
    pub to: Vec<String>,
    /// The user name and password, with the name of the password's variable for messages.
    pub login: Option<(String, SecretString, String)>,
    /// PEM: the only roots trusted when set.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Email {
    /// How messages name it: `email smtp.example.com:587 (SMTP_PASSWORD)` (never a secret).
    pub fn label(&self) -> String {
        match &self.login {
            Some((_, _, var)) => format!("email {}:{} ({var})", self.host, self.port),
            None => format!("email {}:{}", self.host, self.port),
        }
    }

    fn transport(
        &self,
        timeout: std::time::Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let tls = if self.starttls {
            let mut p = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca_pem {
                let ca = Certificate::from_pem(pem)
                    .map_err(|e| format!("ca_file is not a PEM certificate: {e}"))?;
                p = p
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            Tls::Required(p.build_rustls().map_err(|e| e.to_string())?)
        } else {
            Tls::None
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(tls)
            // EHLO with lettre's default, the address literal [127.0.0.1]: valid whatever
            // this host's name is (RFC 5321 §4.1.4).
            .timeout(Some(timeout));
        if let Some((user, password, _)) = &self.login {
            b = b.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(b.build())
    }
}

/// Sends one event as an e-mail, retried with backoff (doubling from `retry.first_delay`) on
/// what may pass (a connection refused or cut, a timeout, a 4xx answer); a 5xx answer (a
/// wrong password, a refused recipient), a server without STARTTLS and a certificate that
/// does not verify fail at once. Returns the number of tries used.
pub async fn deliver_email(
    email: &Email,
    msg: &autogit_core::chat::Message,
    now: u64,
    retry: Retry,
) -> Result<u32, String> {
    let label = email.label();
    let from: Address = email
        .from
        .parse()
        .map_err(|e| format!("{label}: from {}: {e}", email.from))?;
    let to = email
        .to
        .iter()
        .map(|a| {
            a.parse::<Address>()
                .map_err(|e| format!("{label}: to {a}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(Some(from), to).map_err(|e| format!("{label}: {e}"))?;
    let id: String = crate::auth::random::<16>()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = autogit_core::email::message(msg, &email.from, &email.to, now, &id);
    let transport = email.transport(retry.timeout)?;
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        match transport.send_raw(&envelope, text.as_bytes()).await {
            Ok(_) => return Ok(attempt),
            Err(e) => {
                let why = describe(&e);
                if e.is_permanent() || e.is_tls() || e.is_client() || certificate(&why) {
                    return Err(format!("{label}: {why}"));
                }
                last = format!("{label}: {why}");
            }
        }
        if attempt < retry.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    Err(last)
}

/// Whether rustls refused the server's certificate: it will not verify on a retry either.
fn certificate(why: &str) -> bool {
    why.contains("invalid peer certificate")
}

/// lettre's error with its causes, and what to do about the common ones.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    // "Connection error: Connection error: invalid peer certificate": say it once.
    while let Some(i) = s.find("Connection error: Connection error") {
        s.replace_range(i..i + "Connection error: ".len(), "");
    }
    if e.is_tls() || certificate(&s) {
        s.push_str(" (the server's certificate did not verify: check ca_file and the host name)");
    } else if e.status().is_some_and(|c| c.to_string() == "535") {
        s.push_str(" (the server refused the login: check username_env and password_env)");
    } else if e.is_client() && s.contains("STARTTLS") {
        s.push_str(" (starttls: required; the server offers no STARTTLS)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_label_name_the_variable_never_the_password() {
        let e = Email {
            host: "smtp.example.com".into(),
            port: 587,
            starttls: true,
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            login: Some((
                "autogit".into(),
                SecretString::from("hunter2-smtp"),
                "SMTP_PASSWORD".into(),
            )),
            ca_pem: None,
        };
        for text in [format!("{e:?}"), e.label()] {
            assert_eq!(text, "email smtp.example.com:587 (SMTP_PASSWORD)");
        }
    }

    #[test]
    fn a_refused_certificate_is_not_retried() {
        assert!(certificate(
            "Connection error: invalid peer certificate: UnknownIssuer"
        ));
        assert!(!certificate("Connection error: connection refused"));
    }
}
