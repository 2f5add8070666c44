//! `autogit secrets status` and `autogit secrets rotate-key`: parse, call
//! `autogit_app::secrets`, render. Shows key locations, key ids and counts; never a value or
//! key material.

use crate::cli::SecretsCommand;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail};
use autogit_drivers::secrets::{KeyOrigin, StoreStatus};
use serde_json::json;

pub fn run(ui: &Ui, loaded: &Loaded, cmd: SecretsCommand) -> u8 {
    match cmd {
        SecretsCommand::Status => match autogit_app::secrets::status(&loaded.settings) {
            Ok(st) => status(ui, &st),
            Err(e) => fail(ui, e),
        },
        SecretsCommand::RotateKey => match autogit_app::secrets::rotate_key(&loaded.settings) {
            Ok(r) => {
                if ui.json {
                    ui.print_json(&json!({ "rotation": r }));
                } else {
                    println!(
                        "new key {} written to {}; {} secret(s) sealed with it; old key {} removed",
                        r.new_key_id,
                        r.key.display(),
                        r.resealed,
                        r.old_key_id.as_deref().unwrap_or("(none)")
                    );
                    println!(
                        "update your escrow copy of {} and restart a running autogit service",
                        r.key.display()
                    );
                }
                exit::OK
            }
            Err(e) => fail(ui, format!("key rotation failed: {e}")),
        },
    }
}

fn origin(o: KeyOrigin) -> &'static str {
    match o {
        KeyOrigin::SystemdCredential => "systemd credential",
        KeyOrigin::Env => "AUTOGIT_KEY_FILE",
        KeyOrigin::Default => "default (next to the data dir)",
    }
}

fn status(ui: &Ui, st: &StoreStatus) -> u8 {
    let problem = !st.other_key.is_empty() || !st.damaged.is_empty();
    if ui.json {
        ui.print_json(&json!({ "secrets": st }));
    } else {
        let mut t = ui.table();
        t.set_header(vec!["", ""]);
        t.add_row(vec!["secrets dir".to_owned(), st.dir.display().to_string()]);
        t.add_row(vec![
            "key file".to_owned(),
            format!("{} ({})", st.key.path.display(), origin(st.key.origin)),
        ]);
        t.add_row(vec![
            "key id".to_owned(),
            st.key_id
                .clone()
                .unwrap_or_else(|| "none yet (created when a secret is first stored)".into()),
        ]);
        t.add_row(vec!["sealed".to_owned(), st.sealed.to_string()]);
        t.add_row(vec!["plaintext".to_owned(), st.plaintext.to_string()]);
        if st.rotation_pending {
            t.add_row(vec![
                "rotation".to_owned(),
                "interrupted; the next command finishes it".to_owned(),
            ]);
        }
        if !st.other_key.is_empty() {
            t.add_row(vec![
                "sealed with another key".to_owned(),
                st.other_key.join(", "),
            ]);
        }
        if !st.damaged.is_empty() {
            t.add_row(vec!["damaged".to_owned(), st.damaged.join(", ")]);
        }
        println!("{t}");
    }
    if problem {
        ui.error("some secrets cannot be opened with this key: put back the key they were sealed with (docs/gitlab.md, \"The secrets key\") or restore them from a backup");
        return exit::FAILURE;
    }
    exit::OK
}
