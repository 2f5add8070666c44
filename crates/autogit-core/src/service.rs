//! `autogit daemon` as a systemd service: the unit file, as text.

/// The unit that runs `<exe> daemon` with the configuration file (when not the embedded
/// default) and data dir given, hardened (no new privileges, private /tmp, read-only system,
/// only the data dir writable, umask 0077), restarted on failure. With `key`, the secrets'
/// master key file is passed as the systemd credential `autogit.key` (`LoadCredential=`): the
/// daemon reads it from `$CREDENTIALS_DIRECTORY`, never from the file itself.
pub fn systemd_unit(exe: &str, config: Option<&str>, data: &str, key: Option<&str>) -> String {
    let config = config.map(|c| format!(" --config {c}")).unwrap_or_default();
    let key = key
        .map(|k| format!("LoadCredential=autogit.key:{k}\n"))
        .unwrap_or_default();
    format!(
        "[Unit]\nDescription=autogit: keep the self-hosted Git platform healthy\nDocumentation=man:autogit(1)\nAfter=network-online.target docker.service\nWants=network-online.target\n\n\
         [Service]\nType=exec\nExecStart={exe} daemon{config} --data-dir {data}\nRestart=on-failure\nRestartSec=10s\nKillSignal=SIGTERM\nTimeoutStopSec=30s\n\
         NoNewPrivileges=yes\nPrivateTmp=yes\nProtectSystem=strict\nReadWritePaths={data}\nProtectHome=read-only\nUMask=0077\n{key}\n\
         [Install]\nWantedBy=default.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_daemon_with_its_files() {
        let u = systemd_unit(
            "/usr/bin/autogit",
            Some("/etc/autogit.yml"),
            "/var/lib/autogit",
            Some("/var/lib/autogit.key"),
        );
        assert!(u.contains(
            "ExecStart=/usr/bin/autogit daemon --config /etc/autogit.yml --data-dir /var/lib/autogit\n"
        ));
        assert!(u.contains("ReadWritePaths=/var/lib/autogit\n"));
        assert!(u.contains("UMask=0077\nLoadCredential=autogit.key:/var/lib/autogit.key\n\n"));
        let u = systemd_unit("/usr/bin/autogit", None, "/d", None);
        assert!(!u.contains("LoadCredential"));
        assert!(u.contains("ExecStart=/usr/bin/autogit daemon --data-dir /d\n"));
    }
}
