//! The LDAP login provider's decisions (`docs/api.md`, "LDAP"): its settings from `.env` with
//! errors that name the key and what would be valid, the escaping of a username into a search
//! filter (RFC 4515) and into a DN (RFC 4514), and the mapping of group memberships to a role.
//! The directory itself is `autogit_drivers::auth::ldap`'s.

use crate::access::Role;

/// Default search filter for a user (search-then-bind).
pub const DEFAULT_USER_FILTER: &str = "(uid={username})";
/// Default search filter for the groups of a user: `{dn}` is the user's DN, `{username}` the
/// name as typed (posixGroup's `memberUid`), both escaped.
pub const DEFAULT_GROUP_FILTER: &str = "(|(member={dn})(uniqueMember={dn})(memberUid={username}))";
/// Longest username handed to the directory.
pub const MAX_USERNAME: usize = 256;

/// How a user's DN is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserLookup {
    /// Bind as a service account, search `base` with `filter`, then bind as the one entry found.
    Search {
        bind_dn: String,
        base: String,
        filter: String,
    },
    /// Bind directly as the DN the template makes (`uid={username},ou=people,...`).
    Template(String),
}

/// Transport security.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain `ldap://` (loopback or a trusted network only).
    None,
    /// `ldap://` upgraded with the StartTLS extended operation before any bind.
    StartTls,
    /// `ldaps://`.
    Tls,
}

/// The LDAP provider's settings (`LDAP_*` in `.env`). The service account's password is a
/// secret and read by the application (`LDAP_BIND_PASSWORD` or `LDAP_BIND_PASSWORD_FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapSettings {
    pub url: String,
    pub security: Security,
    /// A PEM file of the CA(s) to trust instead of the system's.
    pub ca_file: Option<String>,
    pub lookup: UserLookup,
    pub group_base: String,
    pub group_filter: String,
    /// The group attribute [`roles`](Self::roles) names (`cn`).
    pub group_attr: String,
    /// Group name (compared without case, as LDAP compares `cn`) or group DN → role.
    pub roles: Vec<(String, Role)>,
    pub timeout_secs: u64,
}

/// A bad `LDAP_*` setting: the key, the value's problem and what would be valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SettingError {
    pub key: &'static str,
    pub problem: String,
}

fn bad(key: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        key,
        problem: problem.into(),
    }
}

/// Reads the `LDAP_*` settings through `get` (trimmed, blank = unset). `Ok(None)` when
/// `LDAP_URL` is unset: no LDAP provider.
pub fn settings(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<LdapSettings>, SettingError> {
    let get = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let Some(url) = get("LDAP_URL") else {
        for k in [
            "LDAP_USER_BASE",
            "LDAP_USER_DN",
            "LDAP_ROLES",
            "LDAP_BIND_DN",
        ] {
            if get(k).is_some() {
                return Err(bad(
                    "LDAP_URL",
                    format!(
                        "{k} is set but LDAP_URL is not: set LDAP_URL=ldap://host:389 (or ldaps://host:636) to enable LDAP logins"
                    ),
                ));
            }
        }
        return Ok(None);
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || !matches!(scheme, "ldap" | "ldaps") {
        return Err(bad(
            "LDAP_URL",
            format!("`{url}` is not an LDAP URL: use ldap://host[:port] or ldaps://host[:port]"),
        ));
    }
    let starttls = match get("LDAP_STARTTLS").as_deref() {
        None | Some("false") | Some("no") | Some("0") => false,
        Some("true") | Some("yes") | Some("1") => true,
        Some(v) => return Err(bad("LDAP_STARTTLS", format!("`{v}` is not true or false"))),
    };
    let security = match (scheme, starttls) {
        ("ldaps", true) => {
            return Err(bad(
                "LDAP_STARTTLS",
                "StartTLS upgrades a plain ldap:// connection; with ldaps:// leave it unset",
            ));
        }
        ("ldaps", false) => Security::Tls,
        (_, true) => Security::StartTls,
        _ => Security::None,
    };
    let lookup = match (get("LDAP_USER_DN"), get("LDAP_USER_BASE")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "LDAP_USER_DN",
                "set either LDAP_USER_DN (direct bind) or LDAP_USER_BASE (search with LDAP_BIND_DN), not both",
            ));
        }
        (Some(t), None) => {
            if !t.contains("{username}") {
                return Err(bad(
                    "LDAP_USER_DN",
                    format!(
                        "`{t}` has no {{username}}: use e.g. uid={{username}},ou=people,dc=example,dc=org"
                    ),
                ));
            }
            UserLookup::Template(t)
        }
        (None, Some(base)) => {
            let bind_dn = get("LDAP_BIND_DN").ok_or_else(|| {
                bad(
                    "LDAP_BIND_DN",
                    "LDAP_USER_BASE searches as a service account: set LDAP_BIND_DN and LDAP_BIND_PASSWORD (or _FILE)",
                )
            })?;
            let filter = get("LDAP_USER_FILTER").unwrap_or_else(|| DEFAULT_USER_FILTER.into());
            check_filter("LDAP_USER_FILTER", &filter, &["{username}"])?;
            UserLookup::Search {
                bind_dn,
                base,
                filter,
            }
        }
        (None, None) => {
            return Err(bad(
                "LDAP_USER_BASE",
                "LDAP_URL is set but neither LDAP_USER_BASE (search) nor LDAP_USER_DN (direct bind) is",
            ));
        }
    };
    let group_base = get("LDAP_GROUP_BASE").ok_or_else(|| {
        bad(
            "LDAP_GROUP_BASE",
            "unset: roles come from groups; set the base DN of the groups (ou=groups,dc=example,dc=org)",
        )
    })?;
    let group_filter = get("LDAP_GROUP_FILTER").unwrap_or_else(|| DEFAULT_GROUP_FILTER.into());
    check_filter("LDAP_GROUP_FILTER", &group_filter, &["{dn}", "{username}"])?;
    let group_attr = get("LDAP_GROUP_ATTR").unwrap_or_else(|| "cn".into());
    let roles = parse_roles(&get("LDAP_ROLES").unwrap_or_default())?;
    let timeout_secs = match get("LDAP_TIMEOUT") {
        None => 5,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=60).contains(n))
            .ok_or_else(|| bad("LDAP_TIMEOUT", format!("`{v}` is not 1 to 60 (seconds)")))?,
    };
    Ok(Some(LdapSettings {
        url,
        security,
        ca_file: get("LDAP_CA_FILE"),
        lookup,
        group_base,
        group_filter,
        group_attr,
        roles,
        timeout_secs,
    }))
}

fn check_filter(
    key: &'static str,
    filter: &str,
    placeholders: &[&str],
) -> Result<(), SettingError> {
    let mut depth = 0i32;
    for c in filter.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            break;
        }
    }
    if !filter.starts_with('(') || depth != 0 {
        return Err(bad(
            key,
            format!("`{filter}` is not an LDAP filter in parentheses, e.g. (uid={{username}})"),
        ));
    }
    if !placeholders.iter().any(|p| filter.contains(p)) {
        return Err(bad(
            key,
            format!("`{filter}` uses none of {}", placeholders.join(", ")),
        ));
    }
    Ok(())
}

/// `LDAP_ROLES`: `group:role` pairs separated by commas (`autogit-admins:admin,ops:operator`),
/// or by semicolons when a group is named by its DN (which has commas itself).
pub fn parse_roles(text: &str) -> Result<Vec<(String, Role)>, SettingError> {
    let mut out = Vec::new();
    let sep = if text.contains(';') { ';' } else { ',' };
    for item in text.split(sep).map(str::trim).filter(|s| !s.is_empty()) {
        let Some((group, role)) = item.rsplit_once(':') else {
            return Err(bad(
                "LDAP_ROLES",
                format!("`{item}` is not group:role (role viewer, operator or admin)"),
            ));
        };
        let role = match role.trim() {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            r => {
                return Err(bad(
                    "LDAP_ROLES",
                    format!("`{r}` in `{item}` is not a role: use viewer, operator or admin"),
                ));
            }
        };
        let group = group.trim();
        if group.is_empty() {
            return Err(bad("LDAP_ROLES", format!("`{item}` names no group")));
        }
        out.push((group.to_owned(), role));
    }
    if out.is_empty() {
        return Err(bad(
            "LDAP_ROLES",
            "unset or empty: map at least one group to a role, e.g. LDAP_ROLES=autogit-admins:admin,autogit-ops:operator",
        ));
    }
    Ok(out)
}

/// A value escaped for an LDAP search filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00` (and other control characters their hex too).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' => out.push_str(&format!("\\{:02x}", c as u32)),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A value escaped for a DN's attribute value (RFC 4514 section 2.4): `,` `+` `"` `\` `<` `>`
/// `;` `=` escaped by a backslash, a leading `#` or space and a trailing space too, control
/// characters as hex pairs.
pub fn escape_dn_value(value: &str) -> String {
    let n = value.chars().count();
    let mut out = String::with_capacity(value.len() + 2);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `template` with `{username}` (and `{dn}`) replaced by their escaped values, for a filter.
pub fn fill_filter(template: &str, username: &str, dn: &str) -> String {
    template
        .replace("{username}", &escape_filter_value(username))
        .replace("{dn}", &escape_filter_value(dn))
}

/// The DN of a direct bind: `template` with `{username}` escaped for a DN.
pub fn fill_dn(template: &str, username: &str) -> String {
    template.replace("{username}", &escape_dn_value(username))
}

/// Whether a username may be sent to the directory at all: not empty, not over
/// [`MAX_USERNAME`], no control characters (a NUL would end the name in some servers).
pub fn acceptable_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME
        && !name.chars().any(char::is_control)
        && name.trim() == name
}

/// A group the user is in: its DN and its names (values of the configured attribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub dn: String,
    pub names: Vec<String>,
}

/// The highest role any of `groups` maps to, matching a mapping's group against each group's
/// names and DN without case; `None` when no group is mapped.
pub fn role_for(groups: &[Group], roles: &[(String, Role)]) -> Option<Role> {
    let norm_dn = |d: &str| {
        d.split(',')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(",")
            .to_lowercase()
    };
    roles
        .iter()
        .filter(|(wanted, _)| {
            let w = wanted.to_lowercase();
            groups.iter().any(|g| {
                g.names.iter().any(|n| n.to_lowercase() == w) || norm_dn(&g.dn) == norm_dn(wanted)
            })
        })
        .map(|(_, r)| *r)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    const SEARCH: &[(&str, &str)] = &[
        ("LDAP_URL", "ldap://127.0.0.1:3389"),
        ("LDAP_BIND_DN", "cn=svc,dc=example,dc=org"),
        ("LDAP_USER_BASE", "ou=people,dc=example,dc=org"),
        ("LDAP_GROUP_BASE", "ou=groups,dc=example,dc=org"),
        ("LDAP_ROLES", "admins:admin, ops:operator"),
    ];

    #[test]
    fn filter_values_are_escaped_per_rfc4515() {
        for (input, want) in [
            ("alice", "alice"),
            ("*", "\\2a"),
            ("a*)(uid=*", "a\\2a\\29\\28uid=\\2a"),
            ("x\\y", "x\\5cy"),
            ("nul\0", "nul\\00"),
            ("élodie", "élodie"),
            (
                "*)(|(objectClass=*)",
                "\\2a\\29\\28|\\28objectClass=\\2a\\29",
            ),
        ] {
            assert_eq!(escape_filter_value(input), want, "{input:?}");
        }
        assert_eq!(
            fill_filter("(uid={username})", "*", ""),
            "(uid=\\2a)",
            "a wildcard username matches nobody but a user named *"
        );
    }

    #[test]
    fn dn_values_are_escaped_per_rfc4514() {
        for (input, want) in [
            ("alice", "alice"),
            ("a,ou=admins", "a\\,ou\\=admins"),
            ("#x", "\\#x"),
            (" x ", "\\ x\\ "),
            ("a+b;c<d>e\"f\\", "a\\+b\\;c\\<d\\>e\\\"f\\\\"),
            ("x\0", "x\\00"),
        ] {
            assert_eq!(escape_dn_value(input), want, "{input:?}");
        }
        assert_eq!(
            fill_dn("uid={username},ou=people,dc=x", "bob,ou=admins"),
            "uid=bob\\,ou\\=admins,ou=people,dc=x"
        );
    }

    #[test]
    fn roles_are_the_highest_mapped_group() {
        let g = |dn: &str, n: &str| Group {
            dn: dn.into(),
            names: vec![n.into()],
        };
        let roles = parse_roles("staff:viewer; ops:operator; cn=root,ou=g,dc=x:admin").unwrap();
        let cases: &[(&[Group], Option<Role>)] = &[
            (&[], None),
            (&[g("cn=other,ou=g", "other")], None),
            (&[g("cn=staff,ou=g", "Staff")], Some(Role::Viewer)),
            (
                &[g("cn=staff,ou=g", "staff"), g("cn=ops,ou=g", "ops")],
                Some(Role::Operator),
            ),
            (&[g("CN=root, OU=g, DC=x", "root")], Some(Role::Admin)),
        ];
        for (groups, want) in cases {
            assert_eq!(role_for(groups, &roles), *want, "{groups:?}");
        }
    }

    #[test]
    fn settings_read_both_lookups_and_defaults() {
        assert_eq!(settings(&env(&[])).unwrap(), None);
        let s = settings(&env(SEARCH)).unwrap().unwrap();
        assert_eq!(s.security, Security::None);
        assert_eq!(
            s.lookup,
            UserLookup::Search {
                bind_dn: "cn=svc,dc=example,dc=org".into(),
                base: "ou=people,dc=example,dc=org".into(),
                filter: DEFAULT_USER_FILTER.into(),
            }
        );
        assert_eq!(
            s.roles,
            vec![
                ("admins".into(), Role::Admin),
                ("ops".into(), Role::Operator)
            ]
        );
        assert_eq!((s.timeout_secs, s.group_attr.as_str()), (5, "cn"));
        let mut direct: Vec<_> = SEARCH
            .iter()
            .filter(|(k, _)| !matches!(*k, "LDAP_USER_BASE" | "LDAP_BIND_DN"))
            .copied()
            .collect();
        direct.push(("LDAP_USER_DN", "uid={username},ou=people,dc=example,dc=org"));
        direct.push(("LDAP_STARTTLS", "true"));
        let s = settings(&env(&direct)).unwrap().unwrap();
        assert_eq!(s.security, Security::StartTls);
        assert!(matches!(s.lookup, UserLookup::Template(_)));
    }

    #[test]
    fn bad_settings_name_the_key_and_what_is_valid() {
        let with = |k: &'static str, v: &'static str| {
            let mut e: Vec<_> = SEARCH.iter().filter(|(n, _)| *n != k).copied().collect();
            if !v.is_empty() {
                e.push((k, v));
            }
            settings(&env(&e)).unwrap_err()
        };
        let cases = [
            (with("LDAP_URL", "http://x"), "LDAP_URL", "ldaps://"),
            (
                with("LDAP_STARTTLS", "maybe"),
                "LDAP_STARTTLS",
                "true or false",
            ),
            (with("LDAP_ROLES", ""), "LDAP_ROLES", "at least one group"),
            (
                with("LDAP_ROLES", "admins:root"),
                "LDAP_ROLES",
                "viewer, operator or admin",
            ),
            (with("LDAP_ROLES", "admins"), "LDAP_ROLES", "group:role"),
            (with("LDAP_BIND_DN", ""), "LDAP_BIND_DN", "service account"),
            (with("LDAP_GROUP_BASE", ""), "LDAP_GROUP_BASE", "base DN"),
            (
                with("LDAP_USER_FILTER", "uid={username}"),
                "LDAP_USER_FILTER",
                "parentheses",
            ),
            (
                with("LDAP_USER_FILTER", "(uid=alice)"),
                "LDAP_USER_FILTER",
                "{username}",
            ),
            (with("LDAP_TIMEOUT", "0"), "LDAP_TIMEOUT", "1 to 60"),
            (
                with("LDAP_USER_DN", "uid=x,dc=y"),
                "LDAP_USER_DN",
                "not both",
            ),
        ];
        for (e, key, hint) in cases {
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().contains(hint), "{e} should say {hint}");
        }
        let e = settings(&env(&[
            ("LDAP_URL", "ldaps://x"),
            ("LDAP_STARTTLS", "true"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "LDAP_STARTTLS");
        let e = settings(&env(&[("LDAP_ROLES", "a:admin")])).unwrap_err();
        assert!(e.to_string().contains("LDAP_URL is not"), "{e}");
    }

    #[test]
    fn usernames_the_directory_never_sees() {
        for bad in ["", " alice", "alice ", "a\0b", "a\nb", &"x".repeat(257)] {
            assert!(!acceptable_username(bad), "{bad:?}");
        }
        for good in ["alice", "a*b", "élodie", "bob@example.org"] {
            assert!(acceptable_username(good), "{good:?}");
        }
    }
}
