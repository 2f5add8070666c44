//! E-mail notifications over SMTP (RFC 5321) with STARTTLS (RFC 3207) or implicit TLS
//! ("SMTPS", RFC 8314 §3.3, port 465) and AUTH PLAIN/LOGIN, through lettre on rustls: the
//! server's certificate is checked against Mozilla's roots, or only against `ca_file` when
//! one is given. The message is `core::email`'s; a failed delivery names the server and the
//! variables, never the password.
//!
//! lettre's async transport bounds only the TCP connect by its timeout; each try here is
//! bounded as a whole (greeting, TLS handshake, EHLO, AUTH, DATA), so a server that speaks
//! the other TLS mode (an SMTPS server waits for a TLS ClientHello while a STARTTLS client
//! waits for its greeting) fails with a message instead of hanging.

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use secrecy::{ExposeSecret, SecretString};

pub use autogit_core::config::SmtpTls;

use crate::notify::Retry;

/// One `{type: email}` target of `health.notify`, its secrets read.
#[derive(Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    /// STARTTLS, implicit TLS, or `None` (only for a loopback host: the configuration
    /// refuses it otherwise).
    pub tls: SmtpTls,
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
        let params = || -> Result<TlsParameters, String> {
            let mut p = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca_pem {
                let ca = Certificate::from_pem(pem)
                    .map_err(|e| format!("ca_file is not a PEM certificate: {e}"))?;
                p = p
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            p.build_rustls().map_err(|e| e.to_string())
        };
        let tls = match self.tls {
            SmtpTls::Starttls => Tls::Required(params()?),
            SmtpTls::Implicit => Tls::Wrapper(params()?),
            SmtpTls::None => Tls::None,
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
        let sent = tokio::time::timeout(
            retry.timeout,
            transport.send_raw(&envelope, text.as_bytes()),
        )
        .await;
        match sent {
            Ok(Ok(_)) => return Ok(attempt),
            Ok(Err(e)) => {
                let why = describe(&e, email.tls);
                if e.is_permanent()
                    || e.is_tls()
                    || e.is_client()
                    || certificate(&why)
                    || not_tls(&why)
                {
                    return Err(format!("{label}: {why}"));
                }
                last = format!("{label}: {why}");
            }
            // A server that sends nothing: one that speaks TLS at once to a STARTTLS or
            // plain client, or one too busy to answer. Tried again (it may be the latter).
            Err(_) => last = format!("{label}: {}", silent(retry.timeout, email.tls)),
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

/// Whether rustls got plain text where a TLS record belongs: a server that speaks SMTP
/// before TLS (a STARTTLS or plain server) under `tls: implicit`. It will not change on a
/// retry.
fn not_tls(why: &str) -> bool {
    why.contains("InvalidContentType") || why.contains("corrupt message")
}

/// What a try that got no answer within `timeout` says.
fn silent(timeout: std::time::Duration, tls: SmtpTls) -> String {
    let mut s = format!(
        "no answer from the server within {} s",
        timeout.as_secs_f64()
    );
    match tls {
        SmtpTls::Starttls | SmtpTls::None => s.push_str(
            " (no SMTP greeting: a server that speaks TLS at once (SMTPS, usually port 465) \
             needs `tls: implicit`)",
        ),
        SmtpTls::Implicit => s.push_str(" (the TLS handshake or the SMTP session stalled)"),
    }
    s
}

/// lettre's error with its causes, and what to do about the common ones.
fn describe(e: &lettre::transport::smtp::Error, tls: SmtpTls) -> String {
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
    if tls == SmtpTls::Implicit && not_tls(&s) {
        s.push_str(
            " (tls: implicit, but the server answered in plain text: a STARTTLS server \
             (usually port 587 or 25) needs `tls: starttls`)",
        );
    } else if e.is_tls() || certificate(&s) {
        s.push_str(" (the server's certificate did not verify: check ca_file and the host name)");
    } else if e.status().is_some_and(|c| c.to_string() == "535") {
        s.push_str(" (the server refused the login: check username_env and password_env)");
    } else if e.is_client() && s.contains("STARTTLS") {
        s.push_str(
            " (tls: starttls, but the server offers no STARTTLS: `tls: implicit` if it \
             speaks TLS at once on port 465, `tls: none` for a loopback relay)",
        );
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
            tls: SmtpTls::Starttls,
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

    #[test]
    fn a_silent_server_is_named_by_mode() {
        let t = std::time::Duration::from_millis(1500);
        assert!(silent(t, SmtpTls::Starttls).contains("1.5 s"));
        assert!(silent(t, SmtpTls::Starttls).contains("`tls: implicit`"));
        assert!(!silent(t, SmtpTls::Implicit).contains("`tls: implicit`"));
    }
}
