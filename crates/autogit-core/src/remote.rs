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

/// How a runner host that a `compute` extension reaches is written: `extension:NAME/HOST`.
pub const VIA_EXTENSION: &str = "extension:";

/// A runner host reached through a `compute` extension (`extension:NAME/HOST`): the
/// extension's name and the host as the extension knows it. `None` for any other host.
pub fn via_extension(host: &str) -> Option<(&str, &str)> {
    host.strip_prefix(VIA_EXTENSION)?.split_once('/')
}

/// Checks `extension:NAME/HOST`: NAME an extension name, HOST a host name or address (what
/// the extension is asked to run commands on, and where the ingress reaches the ports its
/// jobs publish).
pub fn check_extension_host(host: &str) -> Result<(), String> {
    let Some((name, target)) = via_extension(host) else {
        return Err(format!(
            "`{host}` is not `extension:NAME/HOST` (a `compute` extension's name, `/`, a host it reaches)"
        ));
    };
    crate::extension::check_name(name)?;
    if target.parse::<std::net::IpAddr>().is_err() {
        crate::validate::check_hostname(target)
            .map_err(|why| format!("`{target}` (after `extension:{name}/`): {why}"))?;
    }
    Ok(())
}

/// Whether `host` is autogit's own machine (`local` or `localhost`: commands run here, not
/// over SSH).
pub fn is_local(host: &str) -> bool {
    host == "local" || host == "localhost"
}

/// Where a runner host is reached on the network (a routed service's upstream): the host
/// without `user@` or `extension:NAME/`.
pub fn host_address(host: &str) -> &str {
    if let Some((_, target)) = via_extension(host) {
        return target;
    }
    host.rsplit_once('@').map_or(host, |(_, h)| h)
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

/// The hosts `runner discover` probes: names and addresses as given (checked with
/// [`check_ssh_host`]), IPv4 CIDR ranges expanded to their host addresses (network and
/// broadcast left out below /31). At most `limit` hosts in all.
pub fn expand_targets(targets: &[String], limit: usize) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in targets {
        if let Some((addr, bits)) = t.split_once('/') {
            let addr: std::net::Ipv4Addr = addr
                .parse()
                .map_err(|_| format!("`{t}`: not an IPv4 range like 192.168.1.0/24"))?;
            let bits: u32 = bits
                .parse()
                .ok()
                .filter(|b| *b <= 32)
                .ok_or_else(|| format!("`{t}`: the prefix length must be 0 to 32"))?;
            let size = 1u64 << (32 - bits);
            if size > limit as u64 {
                return Err(format!(
                    "`{t}` has {size} addresses; at most {limit} are probed (use a longer prefix)"
                ));
            }
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            let base = u32::from(addr) & mask;
            let (first, last) = if size <= 2 {
                (0, size - 1)
            } else {
                (1, size - 2)
            };
            for i in first..=last {
                out.push(std::net::Ipv4Addr::from(base + i as u32).to_string());
            }
        } else {
            check_ssh_host(t)?;
            out.push(t.clone());
        }
        if out.len() > limit {
            return Err(format!("more than {limit} hosts to probe"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|h| seen.insert(h.clone()));
    Ok(out)
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
    fn extension_hosts_name_the_extension_and_the_host() {
        assert_eq!(
            via_extension("extension:wsl-exec/gpu-box.lan"),
            Some(("wsl-exec", "gpu-box.lan"))
        );
        assert_eq!(via_extension("gpu-box.lan"), None);
        assert_eq!(via_extension("extension:wsl-exec"), None);
        assert!(check_extension_host("extension:wsl-exec/gpu-box.lan").is_ok());
        assert!(check_extension_host("extension:wsl-exec/10.0.0.7").is_ok());
        assert!(check_extension_host("extension:wsl-exec/fd00::7").is_ok());
        let bad = check_extension_host("extension:Wsl/gpu").unwrap_err();
        assert!(bad.contains("not an extension name"), "{bad}");
        let bad = check_extension_host("extension:wsl-exec/-oProxyCommand=x").unwrap_err();
        assert!(bad.contains("after `extension:wsl-exec/`"), "{bad}");
        assert!(check_extension_host("extension:wsl-exec").is_err());
        assert_eq!(host_address("extension:wsl-exec/10.0.0.7"), "10.0.0.7");
        assert_eq!(host_address("ci@gpu1.lan"), "gpu1.lan");
        assert_eq!(host_address("gpu1.lan"), "gpu1.lan");
    }

    #[test]
    fn targets() {
        let t = |v: &[&str]| {
            expand_targets(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), 1024)
        };
        let r = t(&["10.0.0.0/30", "gpu1", "10.0.0.1"]).unwrap();
        assert_eq!(r, ["10.0.0.1", "10.0.0.2", "gpu1"]);
        assert_eq!(t(&["10.0.0.7/32"]).unwrap(), ["10.0.0.7"]);
        assert_eq!(t(&["10.0.0.5/24"]).unwrap().len(), 254);
        assert_eq!(t(&["10.0.0.0/31"]).unwrap(), ["10.0.0.0", "10.0.0.1"]);
        assert!(t(&["10.0.0.0/16"]).unwrap_err().contains("65536"));
        assert!(t(&["10.0.0.0/33"]).is_err());
        assert!(t(&["nope/24"]).is_err());
        assert!(t(&["-oProxyCommand=x"]).is_err());
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
