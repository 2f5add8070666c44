# Shared helpers for scripts/*.sh. Installs only what is missing.

need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "autogit: cargo not found. Install Rust 1.95 or newer (https://rustup.rs), then re-run." >&2
        exit 1
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.95.0\n' "$v" | sort -V | head -n1)" != "1.95.0" ]; then
        echo "autogit: rustc $v is too old; autogit needs 1.95 or newer (rustup update)." >&2
        exit 1
    fi
}

# apt_need PACKAGE COMMAND...: installs PACKAGE when any COMMAND is missing.
apt_need() {
    local pkg=$1; shift
    local missing=0
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing=1; done
    [ "$missing" = 0 ] && return 0
    apt_install "$pkg" "$*"
}

# Installs a Debian package (`why`: what needs it, for the error message).
apt_install() {
    local pkg=$1 why=${2:-$1}
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
        echo "autogit: $pkg is needed (for $why); install it with apt-get as root." >&2
        exit 1
    fi
    local SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
    if [ -z "${APT_UPDATED:-}" ]; then
        $SUDO apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    echo "installing $pkg ..."
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}
