//! `autogit tls status`, `autogit tls renew` and `autogit tls ca`: parse, call the TLS controller
//! (`autogit_app::tls`), render. The daemon renews through the same controller.

use crate::cli::{Global, TlsCommand};
use crate::ctx::load_all;
use crate::exit;
use crate::ui::{Ui, fail, with_controller};
use autogit_app::tls::TlsController;
use autogit_drivers::acme::CertInfo;
use serde_json::json;

fn now() -> i64 {
    autogit_drivers::runtime::now() as i64
}

fn show(ui: &Ui, info: &CertInfo, due: bool) {
    let days = (info.not_after - now()) / 86_400;
    if ui.json {
        ui.print_json(&json!({
            "names": info.names, "not_before": info.not_before, "not_after": info.not_after,
            "days_left": days, "renewal_due": due,
            "fullchain": info.fullchain, "key": info.key,
        }));
    } else {
        let mut t = ui.table();
        t.set_header(vec!["NAMES", "EXPIRES IN", "RENEWAL", "FILES"]);
        t.add_row(vec![
            info.names.join(", "),
            format!("{days} days"),
            if due {
                "due".to_owned()
            } else {
                "not due".to_owned()
            },
            format!("{} (key {})", info.fullchain.display(), info.key.display()),
        ]);
        println!("{t}");
    }
}

pub fn run(ui: &Ui, g: &Global, cmd: TlsCommand) -> u8 {
    let loaded = load_all(g, &[]);
    // A mistyped TLS_SOURCE must not fall back to ACME (nor a bad ACME_CHALLENGE to DNS-01).
    if loaded.diagnostics.has_errors() {
        ui.diagnostics(&loaded.diagnostics, &loaded.sources);
        return exit::INVALID_CONFIG;
    }
    let make = |bus: &autogit_app::Bus| {
        TlsController::new(loaded.settings.clone(), bus.clone(), bus.clock().clone())
    };
    with_controller(&loaded, make, async |tls| match cmd {
        TlsCommand::Status => status(ui, tls),
        TlsCommand::Renew { force } => renew(ui, tls, force).await,
        TlsCommand::Ca { out } => ca(ui, tls, &loaded.settings, out.as_deref()),
    })
}

/// The internal CA's certificate (made first when there is none), to stdout or `out`.
fn ca(
    ui: &Ui,
    tls: &TlsController,
    settings: &autogit_app::Settings,
    out: Option<&std::path::Path>,
) -> u8 {
    let source = settings.platform.tls_source;
    if source != autogit_core::platform::TlsSource::Internal {
        return fail(
            ui,
            format!(
                "TLS_SOURCE is `{}`: the internal CA is used only with TLS_SOURCE=internal in .env",
                source.name()
            ),
        );
    }
    let pem = match tls.internal_ca() {
        Ok(p) => p,
        Err(e) => return fail(ui, format!("the internal CA: {e}")),
    };
    match out {
        None => {
            print!("{pem}");
            exit::OK
        }
        Some(path) => match autogit_drivers::fsx::write_atomic(path, pem.as_bytes(), 0o644) {
            Ok(()) => {
                ui.note(&format!(
                    "wrote the internal CA's certificate to {}",
                    path.display()
                ));
                exit::OK
            }
            Err(e) => fail(ui, format!("{}: {e}", path.display())),
        },
    }
}

fn status(ui: &Ui, tls: &TlsController) -> u8 {
    match tls.current() {
        Ok(Some(c)) => {
            show(ui, &c.info, c.due);
            exit::OK
        }
        Ok(None) => {
            if ui.json {
                ui.print_json(&json!({ "certificate": null }));
            } else {
                let domain = tls.acme_settings().map(|(_, d)| d).unwrap_or_default();
                ui.note(&format!(
                    "no certificate for {domain} yet: `autogit tls renew` gets one"
                ));
            }
            exit::OK
        }
        Err(e) => fail(ui, e),
    }
}

async fn renew(ui: &Ui, tls: &TlsController, force: bool) -> u8 {
    let domain = match tls.acme_settings() {
        Ok((_, d)) => d,
        Err(e) => return fail(ui, e),
    };
    let quiet = ui.quiet;
    let progress = move |l: &str| {
        if !quiet {
            eprintln!("{l}");
        }
    };
    match tls.renew(force, &progress).await {
        Ok(Some(r)) => {
            show(ui, &r.info, false);
            if let Some(e) = r.ingress_error {
                ui.note(&format!("warning: the ingress was not updated: {e}"));
            }
            exit::OK
        }
        Ok(None) => {
            if let Ok(Some(c)) = tls.current() {
                show(ui, &c.info, c.due);
            }
            if tls.source() == autogit_core::platform::TlsSource::File {
                ui.note("TLS_CERT_FILE and TLS_KEY_FILE have not changed: already installed; --force installs them again");
            } else {
                ui.note("not due for renewal (two thirds of its lifetime have not passed); --force renews anyway");
            }
            exit::OK
        }
        Err(e) => fail(
            ui,
            format!(
                "certificate for {domain}: {e}; the current certificate (if any) keeps serving"
            ),
        ),
    }
}
