//! Commands for remote hosts: POSIX shell quoting. `ssh` joins its arguments with spaces and
//! hands the result to the remote user's shell, so every argument of a remote command must be
//! quoted for `sh` (the login shell must be POSIX-like: sh, bash, dash, zsh; not csh or fish).
//! **Invariant:** `sh -c "$(sh_join(argv))"` runs `argv` exactly (tested with
//! hostile strings against a real `sh`).

/// Quotes one argument for a POSIX shell: single quotes around it, each `'` written as `'\''`.
/// Plain words made only of safe characters are left as they are, for readable logs.
pub fn sh_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && !arg.starts_with('-')
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,".contains(&b));
    // A leading `-` is harmless to the shell; quoting it anyway shows in logs that it is data.
    // A leading `=` is expanded by zsh (`=cmd`), which may be the remote login shell.
    if safe && !arg.starts_with('=') {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command line a remote shell turns back into exactly `argv`.
pub fn sh_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| sh_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A host name or address safe to put on an `ssh` command line: no leading `-` (option
/// injection, CVE-2017-1000117 style), no whitespace or control characters, no shell or
/// `ssh_config` metacharacters. An optional `user@` prefix is allowed.
pub fn check_ssh_host(host: &str) -> Result<(), String> {
    let (user, name) = match host.rsplit_once('@') {
        Some((u, n)) => (Some(u), n),
        None => (None, host),
    };
    let ok_part = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    };
    if let Some(u) = user
        && (!ok_part(u) || u.contains([':', '[', ']']))
    {
        return Err(format!(
            "`{host}`: the user name has characters ssh would misread"
        ));
    }
    if !ok_part(name) {
        return Err(format!(
            "`{host}` is not a host name or address (letters, digits, `-._:[]`, not starting with `-`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_examples() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("/usr/bin/x", "/usr/bin/x"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("$(id)", "'$(id)'"),
            ("`id`", "'`id`'"),
            ("-rf", "'-rf'"),
            ("a;b", "'a;b'"),
            ("a\nb", "'a\nb'"),
            ("*", "'*'"),
            ("~", "'~'"),
        ];
        for (input, want) in cases {
            assert_eq!(sh_quote(input), *want, "{input:?}");
        }
        assert_eq!(sh_join(&["echo", "a b", "'"]), "echo 'a b' ''\\'''");
    }

    #[test]
    fn ssh_hosts() {
        for ok in ["gpu1", "10.0.0.2", "user@gpu-1.lan", "[fe80::1]", "fe80::1"] {
            assert!(check_ssh_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "host;id",
            "u@",
            "-u@h",
            "h\n",
            "$(id)",
        ] {
            assert!(check_ssh_host(bad).is_err(), "{bad:?}");
        }
    }
}
