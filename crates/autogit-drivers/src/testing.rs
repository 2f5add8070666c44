//! Stand-in images for tests and benchmarks. There is no image registry where autogit is
//! tested, so images are built locally with `docker import` of a root file system made from
//! Debian's static busybox. Production code never uses this module.

use std::path::Path;
use std::process::{Command, Stdio};

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
