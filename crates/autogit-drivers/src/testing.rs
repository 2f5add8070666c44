//! Stand-in images for tests and benchmarks. There is no image registry where autogit is
//! tested, so images are built locally with `docker import` of a root file system made from
//! Debian's static busybox. Production code never uses this module.

use std::path::Path;
use std::process::{Command, Stdio};

pub mod bind;

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A stand-in for GitLab CE: busybox `httpd` on port 80 answering `/-/health` with
/// `GitLab OK`, the image's `/opt/gitlab/bin/gitlab-healthcheck`, GitLab's volume paths.
/// `cmd` replaces the command (empty: httpd in the foreground as PID 1). Tagged
/// `autogit-test/gitlab-ce:<version>-ce.0`, the name autogit derives from
/// `gitlab.image: autogit-test/gitlab-ce` and `gitlab.version`. Built once per tag.
pub fn fake_gitlab_image(version: &str, cmd: &[&str]) -> Result<String, String> {
    let tag = format!("autogit-test/gitlab-ce:{version}-ce.0");
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let present = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(tag);
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox-static is not installed (apt-get install busybox-static)")?;
    let root = std::env::temp_dir().join(format!("autogit-image-{}-{version}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = build(&root, busybox, &tag, cmd);
    let _ = std::fs::remove_dir_all(&root);
    result.map(|()| tag)
}

fn build(r: &Path, busybox: &str, tag: &str, cmd: &[&str]) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    for d in [
        "bin",
        "www/-",
        "opt/gitlab/bin",
        "etc/gitlab",
        "var/opt/gitlab",
        "var/log/gitlab",
        "tmp",
    ] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
    }
    std::fs::copy(busybox, r.join("bin/busybox")).map_err(io)?;
    for applet in [
        "sh", "httpd", "wget", "sleep", "cat", "echo", "ls", "rm", "mkdir", "nc", "true", "false",
        "killall", "pidof",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).map_err(io)?;
    }
    std::fs::write(r.join("www/-/health"), "GitLab OK").map_err(io)?;
    let hc = r.join("opt/gitlab/bin/gitlab-healthcheck");
    std::fs::write(
        &hc,
        "#!/bin/sh\nexec wget -q -O /dev/null http://127.0.0.1:80/-/health\n",
    )
    .map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hc, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    let cmd: Vec<&str> = if cmd.is_empty() {
        vec!["/bin/httpd", "-f", "-v", "-p", "80", "-h", "/www"]
    } else {
        cmd.to_vec()
    };
    let cmd_json = serde_json::to_string(&cmd).map_err(|e| e.to_string())?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(r)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io)?;
    let stdin = tar.stdout.take().ok_or("tar has no stdout")?;
    let out = Command::new("docker")
        .args(["import", "-c", &format!("CMD {cmd_json}"), "-", tag])
        .stdin(stdin)
        .output()
        .map_err(io)?;
    let tar_ok = tar.wait().map_err(io)?.success();
    if !out.status.success() || !tar_ok {
        return Err(format!(
            "docker import {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Tag of [`fake_gitlab_rails_image`].
pub const FAKE_GITLAB_RAILS_IMAGE: &str = "autogit-test/gitlab-rails:1";
/// What [`fake_gitlab_rails_image`] writes into `/etc/gitlab/initial_root_password`.
pub const FAKE_ROOT_PASSWORD: &str = "Fake-Root-Pw-0123456789";

/// A stand-in for the GitLab container's Rails side: busybox with
/// `/opt/gitlab/bin/gitlab-rails`, a script that appends its arguments (one per line, each
/// call ended by a `--end-of-call--` line) to `/tmp/gitlab-rails.args` and answers `runner`
/// with `autogit-admin-token-id=<n>` (n counts the calls from 1), as autogit's admin-token
/// script does on a real GitLab; and `/etc/gitlab/initial_root_password` laid out as GitLab
/// writes it. The command is `sleep` so tests can `exec` into it. Built once.
pub fn fake_gitlab_rails_image() -> Result<String, String> {
    let tag = FAKE_GITLAB_RAILS_IMAGE.to_owned();
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let present = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(tag);
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox-static is not installed (apt-get install busybox-static)")?;
    let root = std::env::temp_dir().join(format!("autogit-rails-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = build_rails(&root, busybox, &tag);
    let _ = std::fs::remove_dir_all(&root);
    result.map(|()| tag)
}

fn build_rails(r: &Path, busybox: &str, tag: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| e.to_string();
    for d in ["bin", "opt/gitlab/bin", "etc/gitlab", "tmp"] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(io)?;
    std::fs::copy(busybox, r.join("bin/busybox")).map_err(io)?;
    for applet in [
        "sh", "cat", "echo", "printf", "grep", "wc", "sleep", "ls", "rm", "mkdir", "true", "false",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).map_err(io)?;
    }
    let rails = r.join("opt/gitlab/bin/gitlab-rails");
    std::fs::write(
        &rails,
        "#!/bin/sh\n\
         # Stand-in for gitlab-rails: records its arguments, answers `runner`.\n\
         log=/tmp/gitlab-rails.args\n\
         for a in \"$@\"; do printf '%s\\n' \"$a\" >> \"$log\"; done\n\
         echo '--end-of-call--' >> \"$log\"\n\
         n=$(grep -c -- '^--end-of-call--$' \"$log\")\n\
         if [ \"$1\" != runner ]; then echo \"gitlab-rails: unsupported command $1\" >&2; exit 1; fi\n\
         echo \"autogit-admin-token-id=$n\"\n",
    )
    .map_err(io)?;
    std::fs::set_permissions(&rails, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    std::fs::write(
        r.join("etc/gitlab/initial_root_password"),
        format!(
            "# WARNING: This value is valid only in the following conditions\n\
             #          1. If provided manually (either via `GITLAB_ROOT_PASSWORD` environment variable or via `gitlab_rails['initial_root_password']` setting in `gitlab.rb`, it was provided before database was seeded for the first time (usually, the first reconfigure run).\n\
             #          2. Password hasn't been changed manually, either via UI or via command line.\n\
             #\n\
             #          If the password shown here doesn't work, you must reset the admin password following https://docs.gitlab.com/ee/security/reset_user_password.html#reset-your-root-password.\n\
             \n\
             Password: {FAKE_ROOT_PASSWORD}\n\
             \n\
             # NOTE: This file will be automatically deleted in the first reconfigure run after 24 hours.\n"
        ),
    )
    .map_err(io)?;
    std::fs::set_permissions(
        r.join("etc/gitlab/initial_root_password"),
        std::fs::Permissions::from_mode(0o600),
    )
    .map_err(io)?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(r)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io)?;
    let stdin = tar.stdout.take().ok_or("tar has no stdout")?;
    let out = Command::new("docker")
        .args([
            "import",
            "-c",
            r#"CMD ["/bin/sleep", "3600"]"#,
            "-c",
            "ENV PATH=/opt/gitlab/bin:/bin",
            "-",
            tag,
        ])
        .stdin(stdin)
        .output()
        .map_err(io)?;
    let tar_ok = tar.wait().map_err(io)?.success();
    if !out.status.success() || !tar_ok {
        return Err(format!(
            "docker import {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
