//! An SSH lab for tests: network namespaces created for the test (one client namespace, one
//! per host, joined by veth pairs with 10.77.x.y addresses that exist only inside them) and a
//! real `sshd` in each host namespace with a host key and an authorized key generated here.
//! Nothing touches the machine's own network. `sshd` logs to `sshd.log` in the host's
//! directory; sshd processes and namespaces are removed on drop.

use crate::remote::ssh::SshConfig;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// One namespace host running sshd.
#[derive(Debug)]
pub struct LabHost {
    pub ns: String,
    /// The host's address (reachable from the client namespace only).
    pub addr: String,
    /// Put programs here to have them on the PATH of commands run over SSH.
    pub bin: PathBuf,
    pub dir: PathBuf,
    sshd: Option<Child>,
}

impl LabHost {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Writes an executable script `name` into this host's PATH.
    pub fn install_script(&self, name: &str, body: &str) {
        let p = self.bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The lab: client namespace, hosts, the client key.
#[derive(Debug)]
pub struct SshLab {
    pub client_ns: String,
    pub hosts: Vec<LabHost>,
    /// The client's private key (authorized on every host).
    pub identity: PathBuf,
    pub dir: PathBuf,
    namespaces: Vec<String>,
}

/// Root, `ip`, `sshd`, `ssh`, `ssh-keygen` present: the lab can run. Otherwise prints
/// "skipping" and returns false, or panics under `AUTOGIT_REQUIRE_TOOLS`.
pub fn lab_available() -> bool {
    let root = crate::host::euid() == Some(0);
    let missing: Vec<&str> = [
        ("/usr/sbin/sshd", "sshd (openssh-server)"),
        ("ssh", "ssh (openssh-client)"),
        ("ssh-keygen", "ssh-keygen"),
        ("ssh-keyscan", "ssh-keyscan"),
        ("ip", "ip (iproute2)"),
    ]
    .into_iter()
    .filter(|(t, _)| !on_path(t))
    .map(|(_, n)| n)
    .collect();
    let why = if !root {
        Some("network namespaces need root".to_owned())
    } else if !missing.is_empty() {
        Some(format!("missing {}", missing.join(", ")))
    } else if !Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("`ip netns` does not work here".to_owned())
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "the SSH lab is required (AUTOGIT_REQUIRE_TOOLS=1): {why}"
        );
        eprintln!("skipping: {why}");
        return false;
    }
    true
}

fn on_path(tool: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl SshLab {
    /// Starts `n` hosts (at most 50).
    pub fn start(n: usize) -> Result<Self, String> {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("ag{}x{seq}", std::process::id());
        let dir = std::env::temp_dir().join(format!("autogit-sshlab-{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let mut lab = SshLab {
            client_ns: format!("{tag}c"),
            hosts: Vec::new(),
            identity: dir.join("id_ed25519"),
            dir: dir.clone(),
            namespaces: Vec::new(),
        };
        // sshd wants its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let id = lab.identity.display().to_string();
        sh(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "autogit-test",
            "-f",
            &id,
        ])?;
        let pubkey = std::fs::read_to_string(format!("{id}.pub")).map_err(|e| e.to_string())?;
        let c = lab.client_ns.clone();
        sh(&["ip", "netns", "add", &c])?;
        lab.namespaces.push(c.clone());
        sh(&["ip", "-n", &c, "link", "set", "lo", "up"])?;
        for i in 0..n {
            let ns = format!("{tag}h{i}");
            sh(&["ip", "netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            let (cif, hif) = (format!("c{i}"), format!("h{i}"));
            sh(&[
                "ip", "link", "add", &cif, "netns", &c, "type", "veth", "peer", "name", &hif,
                "netns", &ns,
            ])?;
            let (caddr, haddr) = (format!("10.77.{i}.1"), format!("10.77.{i}.2"));
            sh(&[
                "ip",
                "-n",
                &c,
                "addr",
                "add",
                &format!("{caddr}/24"),
                "dev",
                &cif,
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{haddr}/24"),
                "dev",
                &hif,
            ])?;
            sh(&["ip", "-n", &c, "link", "set", &cif, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", &hif, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            let hdir = dir.join(format!("host{i}"));
            let bin = hdir.join("bin");
            std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
            let key = hdir.join("ssh_host_ed25519_key");
            sh(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &key.display().to_string(),
            ])?;
            std::fs::write(hdir.join("authorized_keys"), &pubkey).map_err(|e| e.to_string())?;
            let cfg = format!(
                "ListenAddress {haddr}\nPort 22\nHostKey {key}\nAuthorizedKeysFile {ak}\n\
                 PidFile {pid}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n\
                 MaxStartups 50\nMaxSessions 50\nLogLevel VERBOSE\n\
                 ClientAliveInterval 5\nClientAliveCountMax 2\n\
                 Subsystem sftp internal-sftp\n\
                 SetEnv PATH={bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME={home}\n",
                home = hdir.display(),
                key = key.display(),
                ak = hdir.join("authorized_keys").display(),
                pid = hdir.join("sshd.pid").display(),
                bin = bin.display(),
            );
            let cfg_path = hdir.join("sshd_config");
            std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
            let log = hdir.join("sshd.log");
            let child = Command::new("ip")
                .args(["netns", "exec", &ns, "/usr/sbin/sshd", "-D", "-f"])
                .arg(&cfg_path)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("sshd: {e}"))?;
            lab.hosts.push(LabHost {
                ns,
                addr: haddr,
                bin,
                dir: hdir,
                sshd: Some(child),
            });
        }
        for h in &mut lab.hosts {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if h.log().contains("Server listening on") {
                    break;
                }
                if let Some(Ok(Some(status))) = h.sshd.as_mut().map(|c| c.try_wait()) {
                    return Err(format!("sshd exited ({status}):\n{}", h.log()));
                }
                if Instant::now() > deadline {
                    return Err(format!("sshd did not start within 20 s:\n{}", h.log()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(lab)
    }

    /// How autogit should reach the hosts: from the client namespace, with the lab's key,
    /// known_hosts and connection sockets under `data_dir`.
    pub fn ssh_config(&self, data_dir: &Path) -> SshConfig {
        let mut cfg = SshConfig::new(data_dir);
        cfg.launcher = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.client_ns.clone(),
        ];
        cfg.identity = Some(self.identity.clone());
        cfg.user = Some("root".into());
        cfg.config_file = Some("none".into());
        cfg.connect_timeout = Duration::from_secs(2);
        cfg.command_timeout = Duration::from_secs(20);
        cfg
    }

    /// Takes host `i`'s link down or up (from the host side).
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let h = &self.hosts[i];
        sh(&[
            "ip",
            "-n",
            &h.ns,
            "link",
            "set",
            &format!("h{i}"),
            if up { "up" } else { "down" },
        ])
        .map(drop)
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut c) = h.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // `ip netns exec` runs sshd as its child: kill it by its pid file too.
            if let Ok(pid) = std::fs::read_to_string(h.dir.join("sshd.pid"))
                && let Ok(pid) = pid.trim().parse::<u32>()
            {
                let _ = Command::new("kill")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Every process still in a namespace (sshd's per-connection children, ssh masters)
        // goes too; otherwise it keeps the namespace alive after `ip netns del`.
        for ns in &self.namespaces {
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").arg(pid).stderr(Stdio::null()).status();
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            for h in &self.hosts {
                eprintln!("--- sshd log of {} ---\n{}", h.addr, h.log());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
