//! Stand-in images for tests and benchmarks. There is no image registry where autogit is
//! tested, so images are built locally with `docker import` of a root file system made from
//! Debian's static busybox. Production code never uses this module.

use std::path::Path;
use std::process::{Command, Stdio};

pub mod bind;
pub mod dnsmasq;
pub mod minilm;
pub mod netns;
pub mod pebble;
pub mod rclone;

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Revision of the stand-in images' contents: an image built by an older revision (label
/// `io.autogit.stand-in`) is rebuilt rather than reused.
const STAND_IN_REV: &str = "5";

/// Whether `tag` exists, was built by this revision and runs `cmd` (two stand-ins may share
/// a tag with different commands, a healthy and a crashing GitLab; the last one asked for
/// wins).
fn current(tag: &str, cmd: &[&str]) -> bool {
    let Ok(out) = Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.autogit.stand-in\"}}\n{{json .Config.Cmd}}",
            tag,
        ])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    out.status.success()
        && lines.next().map(str::trim) == Some(STAND_IN_REV)
        && lines
            .next()
            .and_then(|l| serde_json::from_str::<Vec<String>>(l).ok())
            .is_some_and(|c| c == cmd)
}

/// nginx run on this host from a prefix of its own (the caller writes `<prefix>/nginx.conf`),
/// in the foreground, its output discarded; `start` returns once `127.0.0.1:port` accepts
/// connections (panicking with `error_log` after 10 s). Dropped: SIGTERM, so that the master
/// stops its workers (SIGKILL would orphan them, still listening), SIGKILL only if it has not
/// gone within 5 s.
#[derive(Debug)]
pub struct HostNginx(std::process::Child);

impl HostNginx {
    pub fn start(bin: &Path, prefix: &Path, port: u16, error_log: &Path) -> HostNginx {
        let nginx = HostNginx(
            Command::new(bin)
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx"),
        );
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(error_log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        nginx
    }
}

impl Drop for HostNginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An example extension of the Rust SDK (`crates/autogit-extension-sdk/examples/<name>.rs`),
/// built by cargo into a target directory of its own (`target/sdk-example`: the build
/// directory of the `cargo test` that runs the caller may be locked); its path.
pub fn sdk_example(name: &str) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = repo.join("target/sdk-example");
    let out = Command::new(env!("CARGO"))
        .current_dir(&repo)
        .args(["build", "-p", "autogit-extension-sdk", "--example", name])
        .arg("--target-dir")
        .arg(&target)
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the SDK example {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/examples").join(name)
}

/// A stand-in for GitLab CE: busybox `httpd` on port 80 answering `/-/health` with
/// `GitLab OK`, the image's `/opt/gitlab/bin/gitlab-healthcheck`, GitLab's volume paths, and
/// its registry's answer to an unauthenticated `GET /v2/` (401) on 5050, which GitLab's health
/// check asks through `/opt/gitlab/embedded/bin/curl` when the registry is on (a shim here,
/// over busybox `wget -S`, for the one form the check uses). `cmd` replaces the command
/// (empty: the 5050 httpd in the background, then the port-80 httpd in the foreground as
/// PID 1). Tagged
/// `autogit-test/gitlab-ce:<version>-ce.0`, the name autogit derives from
/// `gitlab.image: autogit-test/gitlab-ce` and `gitlab.version`. Built once per tag.
pub fn fake_gitlab_image(version: &str, cmd: &[&str]) -> Result<String, String> {
    let cmd: &[&str] = if cmd.is_empty() {
        &["/bin/sh", "/start-gitlab"]
    } else {
        cmd
    };
    cached_image(
        &format!("autogit-test/gitlab-ce:{version}-ce.0"),
        &format!("gitlab-{version}"),
        cmd,
        |root, busybox| build(root, busybox, version),
    )
}

fn build(r: &Path, busybox: &str, version: &str) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    busybox_root(
        r,
        busybox,
        &[
            "sh", "httpd", "wget", "sleep", "cat", "echo", "ls", "rm", "mkdir", "nc", "true",
            "false", "killall", "pidof", "printf", "grep", "tar", "date", "chown", "chmod",
            "touch", "id", "mv", "cp", "sed", "head",
        ],
    )?;
    std::fs::create_dir_all(r.join("www/-")).map_err(io)?;
    std::fs::write(r.join("www/-/health"), "GitLab OK").map_err(io)?;
    gitlab_side(r, version)?;
    std::fs::create_dir_all(r.join("opt/gitlab/embedded/bin")).map_err(io)?;
    std::fs::create_dir_all(r.join("registry/v2")).map_err(io)?;
    // busybox httpd answers 404 before asking for credentials when nothing is there.
    std::fs::write(r.join("registry/v2/index.html"), "{}\n").map_err(io)?;
    // busybox httpd's basic auth on /v2: 401 without credentials, as a registry that wants
    // a token answers.
    std::fs::write(r.join("etc/registry-httpd.conf"), "/v2:registry:stand-in\n").map_err(io)?;
    std::fs::write(
        r.join("start-gitlab"),
        "httpd -p 5050 -h /registry -c /etc/registry-httpd.conf\n\
         exec httpd -f -v -p 80 -h /www\n",
    )
    .map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    for (path, text) in [
        (
            "opt/gitlab/bin/gitlab-healthcheck",
            "#!/bin/sh\nexec wget -q -O /dev/null http://127.0.0.1:80/-/health\n",
        ),
        (
            // `curl -s -o /dev/null -w '%{http_code}' --max-time N URL`: prints the status
            // (the engine's health timeout bounds it; busybox 1.35's `wget -T` crashes).
            "opt/gitlab/embedded/bin/curl",
            "#!/bin/sh\nfor a in \"$@\"; do url=$a; done\n\
             wget -S -O /dev/null \"$url\" 2>&1 | sed -n 's/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p' | head -n 1\n",
        ),
    ] {
        std::fs::write(r.join(path), text).map_err(io)?;
        std::fs::set_permissions(r.join(path), std::fs::Permissions::from_mode(0o755))
            .map_err(io)?;
    }
    Ok(())
}

/// Tag of [`fake_gitlab_rails_image`].
pub const FAKE_GITLAB_RAILS_IMAGE: &str = "autogit-test/gitlab-rails:2";
/// What [`fake_gitlab_rails_image`] writes into `/etc/gitlab/initial_root_password`.
pub const FAKE_ROOT_PASSWORD: &str = "Fake-Root-Pw-0123456789";

/// A stand-in for the GitLab container's Rails side: busybox with
/// `/opt/gitlab/bin/gitlab-rails`, a script that appends its arguments (one per line, each
/// call ended by a `--end-of-call--` line) to `/tmp/gitlab-rails.args`, appends the first line
/// of its standard input (where the token comes) to `/tmp/gitlab-rails.stdin`, and answers
/// `runner` with `autogit-admin-token-id=<n>` (n counts the calls from 1), as autogit's admin-token
/// script does on a real GitLab; and `/etc/gitlab/initial_root_password` laid out as GitLab
/// writes it. The command is `sleep` so tests can `exec` into it. Built once.
pub fn fake_gitlab_rails_image() -> Result<String, String> {
    cached_image(FAKE_GITLAB_RAILS_IMAGE, "rails", SLEEP, build_rails)
}

/// The command of the stand-ins that tests `exec` into.
const SLEEP: &[&str] = &["/bin/sleep", "3600"];

fn build_rails(r: &Path, busybox: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| e.to_string();
    busybox_root(
        r,
        busybox,
        &[
            "sh", "cat", "echo", "printf", "grep", "wc", "sleep", "ls", "rm", "mkdir", "true",
            "false",
        ],
    )?;
    for d in ["opt/gitlab/bin", "etc/gitlab"] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
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
         IFS= read -r line; printf '%s\\n' \"$line\" >> /tmp/gitlab-rails.stdin\n\
         if [ -z \"$line\" ]; then echo 'autogit: no token on standard input' >&2; exit 1; fi\n\
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
    Ok(())
}

/// Where the backup stand-in records every `gitlab-ctl`, `gitlab-backup` and `gitlab-rake`
/// call, one line each.
pub const STAND_IN_LOG: &str = "/var/log/gitlab/stand-in.log";

const GITLAB_CTL: &str = r#"#!/bin/sh
# Stand-in for gitlab-ctl: records the call; `stop [svc]` marks services down, `start` and
# `restart` bring them up, `reconfigure` needs /etc/gitlab/gitlab-secrets.json.
echo "gitlab-ctl $*" >> /var/log/gitlab/stand-in.log
st=/var/opt/gitlab/.stand-in-stopped
case "$1" in
  stop) touch "$st.${2:-all}" ;;
  start|restart) rm -f "$st".* ;;
  reconfigure) [ -f /etc/gitlab/gitlab-secrets.json ] || { echo "gitlab-secrets.json is missing" >&2; exit 1; } ;;
  status) ls /var/opt/gitlab/ | grep -q stand-in-stopped && echo "down: some" || echo "run: all" ;;
  *) ;;
esac
"#;

const GITLAB_RAILS_MIGRATIONS: &str = r#"#!/bin/sh
# Stand-in for gitlab-rails: `runner` with autogit's background-migration check answers
# pending migrations counting down from 2 (per GitLab version), as GitLab finishes them.
echo "gitlab-rails $1" >> /var/log/gitlab/stand-in.log
case "$*" in
*BatchedMigration*)
  v=$(cat /opt/gitlab/embedded/service/gitlab-rails/VERSION)
  f="/var/opt/gitlab/.stand-in-migrations-$v"
  n=$(cat "$f" 2>/dev/null || echo 2)
  if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$f"; fi
  echo "autogit-pending=$n failed=0"
  ;;
*) echo "gitlab-rails: this stand-in only answers the background-migration check" >&2; exit 1 ;;
esac
"#;

const GITLAB_BACKUP: &str = r#"#!/bin/sh
# Stand-in for gitlab-backup: `create` tars /var/opt/gitlab/data into a file named the way
# GitLab names its backups; `restore BACKUP=<id>` refuses while puma or sidekiq run, on a
# version mismatch or a missing file, else replaces /var/opt/gitlab/data.
echo "gitlab-backup $*" >> /var/log/gitlab/stand-in.log
v=$(cat /opt/gitlab/embedded/service/gitlab-rails/VERSION)
dir=/var/opt/gitlab/backups
case "$1" in
create)
  if [ -f /var/opt/gitlab/.stand-in-fail-create ]; then echo "Dumping PostgreSQL database gitlabhq_production ... [FAILED]"; exit 1; fi
  mkdir -p "$dir"
  id="$(date +%s)_$(date +%Y_%m_%d)_$v"
  tar -C /var/opt/gitlab -cf "$dir/${id}_gitlab_backup.tar" data || exit 1
  chown git:git "$dir/${id}_gitlab_backup.tar"
  echo "Backup $id is done."
  ;;
restore)
  id=""
  for a in "$@"; do case "$a" in BACKUP=*) id="${a#BACKUP=}" ;; esac; done
  f="$dir/${id}_gitlab_backup.tar"
  [ -f "$f" ] || { echo "The backup file $f does not exist!"; exit 1; }
  for s in puma sidekiq; do
    [ -f /var/opt/gitlab/.stand-in-stopped.$s ] || [ -f /var/opt/gitlab/.stand-in-stopped.all ] || { echo "$s is running: stop puma and sidekiq before restoring"; exit 1; }
  done
  case "$id" in *_"$v") ;; *) echo "GitLab version mismatch: backup $id, running $v"; exit 1 ;; esac
  rm -rf /var/opt/gitlab/data && tar -C /var/opt/gitlab -xf "$f" || exit 1
  touch /var/opt/gitlab/.stand-in-restored
  echo "Restore task is done."
  ;;
*) echo "gitlab-backup: unknown command $1"; exit 1 ;;
esac
"#;

/// A stand-in for the GitLab container's backup side, tagged
/// `autogit-test/gitlab-backup:<version>`: `gitlab-ctl`, `gitlab-backup` and `gitlab-rake`
/// scripts that record their calls in [`STAND_IN_LOG`] and behave as described in their
/// comments, the Omnibus VERSION file, `/etc/gitlab/{gitlab-secrets.json,gitlab.rb}` and a
/// `git` user, laid out as in the real image. The command is `sleep`. Built once per tag.
pub fn fake_gitlab_backup_image(version: &str) -> Result<String, String> {
    cached_image(
        &format!("autogit-test/gitlab-backup:{version}"),
        &format!("backup-{version}"),
        SLEEP,
        |root, busybox| build_backup(root, busybox, version),
    )
}

/// A root file system's base: `/bin` with static busybox and its `applets` linked, and a
/// world-writable sticky `/tmp`.
fn busybox_root(r: &Path, busybox: &str, applets: &[&str]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| e.to_string();
    for d in ["bin", "tmp"] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(io)?;
    std::fs::copy(busybox, r.join("bin/busybox")).map_err(io)?;
    for applet in applets {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).map_err(io)?;
    }
    Ok(())
}

/// Busybox with `sh` and `httpd`: the stand-in web services of the ingress tests (each
/// answering its own name) and the base the real Traefik binary is mounted into. The command is
/// `sleep`; tests give their own. Built once.
pub const WEB_STAND_IN_IMAGE: &str = "autogit-test/web:1";

pub fn web_stand_in_image() -> Result<String, String> {
    cached_image(WEB_STAND_IN_IMAGE, "web", SLEEP, |r, busybox| {
        busybox_root(
            r,
            busybox,
            &[
                "sh", "httpd", "echo", "printf", "cat", "mkdir", "sleep", "ls", "true",
            ],
        )
    })
}

/// Busybox with `sh`, `wget`, `nc`, `test` and `httpd`: a CI job's container in the runner
/// isolation tests (it tries to reach what it must not) and the platform services it tries.
pub const JOB_STAND_IN_IMAGE: &str = "autogit-test/job:1";

pub fn job_stand_in_image() -> Result<String, String> {
    cached_image(JOB_STAND_IN_IMAGE, "job", SLEEP, |r, busybox| {
        busybox_root(
            r,
            busybox,
            &[
                "sh", "httpd", "echo", "printf", "cat", "mkdir", "sleep", "ls", "true", "wget",
                "nc", "test", "[", "timeout", "ip", "id",
            ],
        )
    })
}

/// Debian's nginx (the host's `/usr/sbin/nginx` and the libraries it links) laid out as the
/// official image is: `/etc/nginx/nginx.conf` includes `/etc/nginx/conf.d/*.conf` in its `http`
/// block, a `nginx` user, `/var/log/nginx/{access,error}.log` linked to the container's output,
/// `nginx -g 'daemon off;'` is the command, so `nginx -s reload` through `docker exec` works as
/// on the pinned image. The official image has the `stream` module built in; Debian's is a
/// dynamic module (`libnginx-mod-stream`), copied in with its `load_module` line in
/// `/etc/nginx/modules-enabled/`, which autogit's rendered main configuration includes. The
/// ingress tests run autogit's rendered `nginx/nginx.conf` and `nginx/autogit.conf` in it.
/// Built once.
pub const NGINX_STAND_IN_IMAGE: &str = "autogit-test/nginx:2";

pub fn nginx_stand_in_image() -> Result<String, String> {
    const CMD: &[&str] = &["/usr/sbin/nginx", "-g", "daemon off;"];
    cached_image(NGINX_STAND_IN_IMAGE, "nginx", CMD, |r, busybox| {
        let io = |e: std::io::Error| e.to_string();
        busybox_root(r, busybox, &["sh", "cat", "ls", "kill", "sleep"])?;
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("nginx is not installed (apt-get install nginx-light)")?;
        copy_with_libraries(r, nginx)?;
        let nginx_in = r.join("usr/sbin/nginx");
        if !nginx_in.exists() {
            std::fs::create_dir_all(r.join("usr/sbin")).map_err(io)?;
            std::fs::copy(nginx, &nginx_in).map_err(io)?;
        }
        // On PATH (`/bin` in these images) as in the official image, for `nginx -s reload`.
        std::os::unix::fs::symlink("/usr/sbin/nginx", r.join("bin/nginx")).map_err(io)?;
        let stream = "/usr/lib/nginx/modules/ngx_stream_module.so";
        if Path::new(stream).exists() {
            let dest = r.join(stream.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().ok_or("a file has a parent")?).map_err(io)?;
            std::fs::copy(stream, &dest).map_err(io)?;
            std::fs::create_dir_all(r.join("etc/nginx/modules-enabled")).map_err(io)?;
            std::fs::write(
                r.join("etc/nginx/modules-enabled/50-mod-stream.conf"),
                format!("load_module {stream};\n"),
            )
            .map_err(io)?;
        }
        for d in [
            "etc/nginx/conf.d",
            "var/run",
            "var/log/nginx",
            "var/lib/nginx/body",
            "var/lib/nginx/proxy",
            "var/lib/nginx/fastcgi",
            "var/lib/nginx/uwsgi",
            "var/lib/nginx/scgi",
            "run",
        ] {
            std::fs::create_dir_all(r.join(d)).map_err(io)?;
        }
        std::fs::copy("/etc/nginx/mime.types", r.join("etc/nginx/mime.types")).map_err(io)?;
        std::os::unix::fs::symlink("/dev/stdout", r.join("var/log/nginx/access.log"))
            .map_err(io)?;
        std::os::unix::fs::symlink("/dev/stderr", r.join("var/log/nginx/error.log")).map_err(io)?;
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             nginx:x:101:101:nginx:/nonexistent:/bin/false\n",
        )
        .map_err(io)?;
        std::fs::write(
            r.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nnginx:x:101:\n",
        )
        .map_err(io)?;
        std::fs::write(
            r.join("etc/nginx/nginx.conf"),
            "# The official image's layout: the http block includes conf.d.\n\
             user nobody nogroup;\nworker_processes 1;\nerror_log stderr notice;\npid /run/nginx.pid;\n\
             events { worker_connections 1024; }\n\
             http {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n\
             \x20   access_log /dev/stdout;\n    sendfile on;\n    keepalive_timeout 65;\n\
             \x20   include /etc/nginx/conf.d/*.conf;\n}\n",
        )
        .map_err(io)?;
        Ok(())
    })
}

/// Copy a host binary and the shared libraries it links (as `ldd` lists them) into the root
/// file system `r`, at their host paths.
fn copy_with_libraries(r: &Path, binary: &str) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let ldd = Command::new("ldd").arg(binary).output().map_err(io)?;
    let mut files = vec![binary.to_owned()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)` or `/lib64/ld-linux… (0x…)`
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(path.to_owned());
        }
    }
    for f in &files {
        let dest = r.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().ok_or("a file has a parent")?).map_err(io)?;
        std::fs::copy(f, &dest).map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(())
}

/// GitLab's container registry, as the ingress sees it: Debian's `docker-registry` (the CNCF
/// `distribution` registry that Omnibus bundles as GitLab's registry; package
/// `docker-registry`) and the libraries it links, serving plain HTTP on
/// [`REGISTRY_STAND_IN_PORT`] with filesystem storage and relative URLs. No
/// authentication: GitLab's token service does not run here. Built once.
pub const REGISTRY_STAND_IN_IMAGE: &str = "autogit-test/registry:1";

/// The port the registry stand-in listens on (Omnibus's registry nginx port behind the ingress).
pub const REGISTRY_STAND_IN_PORT: u16 = 5050;

pub fn registry_stand_in_image() -> Result<String, String> {
    const CMD: &[&str] = &[
        "/usr/bin/docker-registry",
        "serve",
        "/etc/docker/registry/config.yml",
    ];
    cached_image(REGISTRY_STAND_IN_IMAGE, "registry", CMD, |r, busybox| {
        let io = |e: std::io::Error| e.to_string();
        busybox_root(r, busybox, &["sh", "cat", "ls", "sleep"])?;
        let bin = "/usr/bin/docker-registry";
        if !Path::new(bin).exists() {
            return Err(
                "docker-registry is not installed (apt-get install docker-registry)".into(),
            );
        }
        copy_with_libraries(r, bin)?;
        for d in ["etc/docker/registry", "var/lib/registry", "tmp"] {
            std::fs::create_dir_all(r.join(d)).map_err(io)?;
        }
        std::fs::write(
            r.join("etc/docker/registry/config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :{REGISTRY_STAND_IN_PORT}\n  relativeurls: true\n"
            ),
        )
        .map_err(io)?;
        Ok(())
    })
}

/// The parts of GitLab's image that backup, restore and upgrades use: `gitlab-ctl`,
/// `gitlab-backup`, `gitlab-rake` and `gitlab-rails` stand-ins, the VERSION file, a `git`
/// user and `/etc/gitlab`.
fn gitlab_side(r: &Path, version: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| e.to_string();
    for d in [
        "opt/gitlab/bin",
        "opt/gitlab/embedded/service/gitlab-rails",
        "etc/gitlab",
        "var/opt/gitlab/backups",
        "var/opt/gitlab/data",
        "var/log/gitlab",
    ] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
    }
    let script = |name: &str, body: &str| -> Result<(), String> {
        let p = r.join("opt/gitlab/bin").join(name);
        std::fs::write(&p, body).map_err(io)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io)
    };
    script("gitlab-ctl", GITLAB_CTL)?;
    script("gitlab-backup", GITLAB_BACKUP)?;
    script(
        "gitlab-rake",
        "#!/bin/sh\necho \"gitlab-rake $*\" >> /var/log/gitlab/stand-in.log\n",
    )?;
    std::fs::write(
        r.join("opt/gitlab/embedded/service/gitlab-rails/VERSION"),
        format!("{version}\n"),
    )
    .map_err(io)?;
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ngit:x:998:998::/var/opt/gitlab:/bin/sh\n",
    )
    .map_err(io)?;
    std::fs::write(r.join("etc/group"), "root:x:0:\ngit:x:998:\n").map_err(io)?;
    std::fs::write(
        r.join("etc/gitlab/gitlab-secrets.json"),
        "{\"gitlab_rails\": {\"secret_key_base\": \"stand-in-secret-key-base\"}}\n",
    )
    .map_err(io)?;
    std::fs::write(
        r.join("etc/gitlab/gitlab.rb"),
        "external_url 'http://gitlab.example.test'\n",
    )
    .map_err(io)?;
    for f in ["etc/gitlab/gitlab-secrets.json", "etc/gitlab/gitlab.rb"] {
        std::fs::set_permissions(r.join(f), std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    script("gitlab-rails", GITLAB_RAILS_MIGRATIONS)?;
    Ok(())
}

/// The backup stand-in's `gitlab-healthcheck`: unhealthy while a service is stopped, and
/// after a restore of data that carries `stand-in-broken` (so a test can make an archive that
/// restores but does not come up).
const BACKUP_HEALTHCHECK: &str = r#"#!/bin/sh
for f in /var/opt/gitlab/.stand-in-stopped.*; do
  [ -e "$f" ] && { echo "stopped: $f"; exit 1; }
done
if [ -f /var/opt/gitlab/.stand-in-restored ] && [ -f /var/opt/gitlab/data/stand-in-broken ]; then
  echo "the restored data does not come up"; exit 1
fi
exit 0
"#;

fn build_backup(r: &Path, busybox: &str, version: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    busybox_root(
        r,
        busybox,
        &[
            "sh", "cat", "echo", "printf", "grep", "ls", "rm", "mkdir", "true", "false", "sleep",
            "tar", "date", "chown", "chmod", "touch", "id", "mv", "cp", "[", "test",
        ],
    )?;
    gitlab_side(r, version)?;
    let hc = r.join("opt/gitlab/bin/gitlab-healthcheck");
    std::fs::write(&hc, BACKUP_HEALTHCHECK).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&hc, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `tar -c` of the root file system `r` piped into `docker import` as `tag`, with PATH set to
/// GitLab's, `cmd` as the image's command and the stand-in revision label.
fn import_rootfs(r: &Path, tag: &str, cmd: &[&str]) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let cmd_json = serde_json::to_string(cmd).map_err(|e| e.to_string())?;
    let changes = [
        format!("CMD {cmd_json}"),
        "ENV PATH=/opt/gitlab/bin:/bin".to_owned(),
        format!("LABEL io.autogit.stand-in={STAND_IN_REV}"),
    ]
    .into_iter()
    .flat_map(|c| ["-c".to_owned(), c]);
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(r)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io)?;
    let stdin = tar.stdout.take().ok_or("tar has no stdout")?;
    let out = Command::new("docker")
        .arg("import")
        .args(changes)
        .args(["-", tag])
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

/// A stand-in image, built once per tag, stand-in revision and command (one build at a time
/// in this process): `build(root, busybox)` lays out a root file system in a scratch
/// directory (`name` tells the directory apart), which is imported with `cmd`.
fn cached_image(
    tag: &str,
    name: &str,
    cmd: &[&str],
    build: impl FnOnce(&Path, &str) -> Result<(), String>,
) -> Result<String, String> {
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if current(tag, cmd) {
        return Ok(tag.to_owned());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox-static is not installed (apt-get install busybox-static)")?;
    let root = std::env::temp_dir().join(format!("autogit-image-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = build(&root, busybox).and_then(|()| import_rootfs(&root, tag, cmd));
    let _ = std::fs::remove_dir_all(&root);
    result.map(|()| tag.to_owned())
}
