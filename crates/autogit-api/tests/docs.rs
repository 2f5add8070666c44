//! docs/api.md lists every operation of the table, with its method, path and role.

#[test]
fn the_docs_list_every_operation() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    for info in autogit_api::ops::all() {
        let role = match info.access {
            autogit_api::op::Access::Public => "none".to_owned(),
            autogit_api::op::Access::Role(r) => r.to_string(),
        };
        let row = format!(
            "| {} | `{} {}` | `{}` | {} |",
            info.area,
            info.verb.as_str(),
            info.path,
            info.id,
            role
        );
        assert!(
            doc.contains(&row),
            "docs/api.md lacks the row for {}: {row}",
            info.id
        );
    }
}
