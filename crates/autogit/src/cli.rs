//! The command line, defined once: `--help`, the man page (`autogit man`) and shell completions
//! (`autogit completions <shell>`) are all generated from these types.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "autogit",
    version,
    about = "Stand up a self-hosted Git platform (GitLab CE, mirrors, runners, ingress) and keep it healthy",
    long_about = "autogit deploys GitLab CE in containers, mirrors repositories into it, manages CPU and GPU runners, \
                  serves every service on its own subdomain and heals what breaks.\n\n\
                  Configuration layers, lowest first: built-in defaults < preset < autogit.yml < environment \
                  (AUTOGIT_SECTION__KEY=value) < command-line flags (--preset, --set key.path=value).",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage error or command not available yet, 3 invalid configuration; `diagnose`: 10 a warning, 11 a failed check."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Configuration file [default: ./autogit.yml, else the embedded default]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "AUTOGIT_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Platform registry (.env) [default: .env next to the configuration file]
    #[arg(long, global = true, env = "AUTOGIT_ENV_FILE", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Where autogit keeps state, secrets and rendered files
    /// [default: $XDG_DATA_HOME/autogit, or /var/lib/autogit as root]
    #[arg(long, global = true, env = "AUTOGIT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format
    #[arg(long, short = 'o', global = true, env = "AUTOGIT_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Override one configuration value (repeatable), e.g. --set gitlab.hostname=git.example.com
    #[arg(long = "set", global = true, value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// More detail (repeat for more)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Never color the output (also NO_COLOR=1)
    #[arg(long, global = true, env = "AUTOGIT_NO_COLOR")]
    pub no_color: bool,
    /// Drive a remote autogit server instead of this host (`status` so far), e.g.
    /// https://api.example.com; the key or token comes from AUTOGIT_API_KEY
    #[arg(long, global = true, env = "AUTOGIT_API", value_name = "URL")]
    pub api: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Where the platform runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetArg {
    /// The container engine of this host (Docker or Podman)
    #[default]
    Engine,
    /// A Kubernetes cluster, through a kubeconfig context (the Kubernetes export, applied by
    /// server-side apply)
    Kubernetes,
}

/// Where a command acts: the engine, or a Kubernetes cluster's context.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TargetArgs {
    /// Where the platform runs
    #[arg(long, value_enum, default_value = "engine")]
    pub target: TargetArg,
    /// With --target kubernetes: the kubeconfig context (KUBECONFIG, else ~/.kube/config);
    /// its current context when not given
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetArg {
    Minimal,
    Homelab,
    Team,
    Beast,
}

impl PresetArg {
    pub fn name(self) -> &'static str {
        match self {
            PresetArg::Minimal => "minimal",
            PresetArg::Homelab => "homelab",
            PresetArg::Team => "team",
            PresetArg::Beast => "beast",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented autogit.yml and .env to start from
    Init {
        /// Directory to write into
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration and report every problem at once
    Validate,
    /// Show the platform autogit would deploy; changes nothing
    Plan {
        /// Use this preset instead of the configured one
        #[arg(long, value_enum)]
        preset: Option<PresetArg>,
    },
    /// Deploy the platform (with --dry-run: render files and show what would happen)
    Install {
        /// Use this preset instead of the configured one
        #[arg(long, value_enum)]
        preset: Option<PresetArg>,
        /// Render files into the data dir and print the plan and images; touch nothing else
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for every service to become healthy (GitLab's first boot takes
        /// minutes); 0 returns right after starting the containers
        #[arg(long, default_value = "15m", value_name = "DURATION")]
        wait: String,
        /// Do not run `gitlab bootstrap` once GitLab is healthy
        #[arg(long, env = "AUTOGIT_NO_BOOTSTRAP", value_parser = clap::builder::BoolishValueParser::new())]
        no_bootstrap: bool,
        /// Do not install and start `autogit daemon` as a systemd service afterwards
        #[arg(long, env = "AUTOGIT_NO_SERVICE", value_parser = clap::builder::BoolishValueParser::new())]
        no_service: bool,
        #[command(flatten)]
        target: TargetArgs,
        /// With --target kubernetes: take over fields another field manager owns (server-side
        /// apply's force); without it such a conflict stops the install and names the fields
        #[arg(long)]
        force_conflicts: bool,
    },
    /// Remove the platform's containers and network (volumes only with --volumes)
    Down {
        /// Also delete the named volumes: all GitLab data. Asks first unless --yes
        #[arg(long)]
        volumes: bool,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Serve the REST API (/api/v1, OpenAPI 3.1 at /api/v1/openapi.json)
    Serve {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
        listen: SocketAddr,
        /// Print the OpenAPI document and exit (docs/api/openapi.json is this output)
        #[arg(long)]
        print_openapi: bool,
        /// Largest request body in bytes
        #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
        max_body: usize,
        /// Requests per second per client address (0: no limit)
        #[arg(long, default_value_t = 50.0, value_name = "N")]
        rate_per_addr: f64,
        /// Requests per second per API key or token (0: no limit)
        #[arg(long, default_value_t = 100.0, value_name = "N")]
        rate_per_key: f64,
    },
    /// Run the reconcile loop: react to engine events and reconcile every interval
    Daemon {
        /// Print a systemd unit for this daemon and exit
        #[arg(long)]
        print_systemd_unit: bool,
        /// Also serve the REST API in this process on ADDR (e.g. 127.0.0.1:8000), on the
        /// daemon's event bus; off by default. The `api` service of SERVICES_ENABLED is the
        /// alternative behind the ingress (docs/config.md, "The `api` service")
        #[arg(long, value_name = "ADDR")]
        api_listen: Option<SocketAddr>,
        /// With --target kubernetes: only the cluster's reconcile loop runs (woken by its
        /// workloads' changes); the other loops keep running in the engine's daemon
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Export the platform as infrastructure as code
    #[command(subcommand)]
    Export(ExportCommand),
    /// The service registry: every service, its URL, ports and health endpoints
    Services,
    /// Check everything the platform depends on; say what is wrong and the exact fix
    ///
    /// Exit status: 0 when every check is ok or skipped, 10 when the worst is a warning, 11
    /// when one fails (1: diagnose itself could not run; 3: the configuration is invalid).
    Diagnose {
        /// Run only these checks: an id (`service.gitlab`) or a group (`dns`); repeatable
        #[arg(long, value_name = "ID")]
        only: Vec<String>,
        /// Apply the safe fixes (a reconcile pass, a certificate renewal), then check again
        #[arg(long)]
        fix: bool,
        /// Also write a support bundle (tar.gz, secrets redacted) to this file
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Give each check this long before it is abandoned as failed
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        timeout: String,
    },
    /// Health of the platform or one part of it
    Status {
        /// A service (gitlab, grafana, runner-NAME, ...), or `runners` for every runner
        service: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// GitLab: bootstrap users and tokens, rotate tokens, runner tokens, status, secrets
    #[command(subcommand)]
    Gitlab(GitlabCommand),
    /// The platform's wildcard certificate (ACME DNS-01): status, renew
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Repository mirroring
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// CPU and GPU runners
    #[command(subcommand)]
    Runner(RunnerCommand),
    /// GPU compute jobs
    #[command(subcommand)]
    Compute(ComputeCommand),
    /// Run one reconcile pass now
    Reconcile {
        /// Clear the human-intervention flag of a service
        #[arg(long, value_name = "SERVICE")]
        clear: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The secret store: where its key is, what is sealed; rotate the key
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Back up GitLab (gitlab-backup), its secrets, autogit's configuration, state and secrets
    /// into one archive under backup.path; keeps backup.retention archives
    Backup {
        /// Encrypt the archive to this age recipient (age1…, repeatable; overrides
        /// backup.encrypt_to). The archive is written as <name>.tar.age
        #[arg(long, value_name = "RECIPIENT", conflicts_with = "passphrase_file")]
        encrypt_to: Vec<String>,
        /// Encrypt the archive with the passphrase in FILE (age scrypt; first line; the file
        /// must not be readable by group or others)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore a backup archive into the running GitLab (same GitLab version only)
    Restore {
        /// The archive: a file, or with --from its name on the target (or `latest`)
        #[arg(required_unless_present = "list")]
        archive: Option<PathBuf>,
        /// Fetch the archive from this backup target (backup.targets[].name) and verify its
        /// SHA-256 before restoring
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// With --from: list the target's complete archives and restore nothing
        #[arg(long, requires = "from")]
        list: bool,
        /// Test the archive instead: restore it into a scratch GitLab made from the running
        /// one (fresh volumes, no network, removed afterwards), which must pass its health
        /// check; the running GitLab is not touched. `latest` names the newest local archive.
        /// Recorded for `autogit diagnose` (backup.restore_test)
        #[arg(long, conflicts_with = "list")]
        test: bool,
        /// Decrypt an encrypted archive (.tar.age) with this age identity file (AGE-SECRET-KEY-1…)
        #[arg(long, value_name = "FILE", conflicts_with = "passphrase_file")]
        identity: Option<PathBuf>,
        /// Decrypt an encrypted archive with the passphrase in FILE
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
        /// How long to wait for GitLab's readiness afterwards; 0 does not wait
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        wait: String,
    },
    /// Upgrade GitLab through its required upgrade stops: a backup before each step, then the
    /// new image, health, and background migrations
    Upgrade {
        /// The GitLab version to reach, e.g. 18.5.4
        #[arg(long, value_name = "VERSION")]
        to: String,
        /// The patch to use for a required stop (repeatable), e.g. --via 18.8.3
        #[arg(long, value_name = "VERSION")]
        via: Vec<String>,
        /// Show the path; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
        /// Per step: how long to wait for health, then for background migrations
        #[arg(long, default_value = "30m", value_name = "DURATION")]
        wait: String,
        /// How often to check background migrations
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        poll: String,
    },
    /// Show logs of the platform's services, or search the indexed logs (`logs search`)
    #[command(args_conflicts_with_subcommands = true)]
    Logs {
        #[command(subcommand)]
        cmd: Option<LogsCommand>,
        component: Vec<String>,
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        tail: Option<usize>,
    },
    /// DNS records of the platform: compare with the zone, and sync (DNS_PROVIDER in .env)
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Extensions: out-of-process providers in <data dir>/extensions (EXTENSIONS_DIR), enabled
    /// by EXTENSIONS_ENABLED in .env; see docs/extensions.md
    #[command(subcommand)]
    Extension(ExtensionCommand),
    /// Prompt-injection filter: check text, scan repositories, quarantine, serve forward-auth
    #[command(subcommand)]
    Guard(GuardCommand),
    /// REST API keys: create (the key is shown once), list, revoke
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Local users of the REST API (the `local` login provider): add, list, remove
    #[command(subcommand)]
    ApiUser(ApiUserCommand),
    /// REST API authentication: rotate the token signing key
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The audit log (API requests, security decisions, key, user and signing-key changes):
    /// show the newest records, or verify its hash chain
    Audit {
        #[command(subcommand)]
        cmd: Option<AuditCommand>,
        /// How many of the newest records to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
    /// Announce this host on the LAN over mDNS (`_autogit._tcp`) so that `autogit runner
    /// discover` finds it; runs until stopped (a systemd service on GPU hosts)
    Agent {
        /// The name to announce [default: the host name]
        #[arg(long)]
        name: Option<String>,
        /// The SSH port autogit should use for this host
        #[arg(long, default_value_t = 22)]
        ssh_port: u16,
    },
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A compose file of the whole platform (and the configuration files it mounts)
    Compose(ExportArgs),
    /// Kubernetes manifests: Namespace, a StatefulSet for GitLab, Deployments, Services,
    /// Ingress, cert-manager issuer and certificate, NetworkPolicies (docs/export.md)
    Kubernetes(ExportArgs),
    /// A Kustomize base: the Kubernetes manifests and a kustomization.yaml pinning every
    /// image (`kubectl apply -k DIR`; an overlay changes tags and adds patches)
    Kustomize(ExportArgs),
    /// Terraform for one Docker host (kreuzwerker/docker): network, volumes, images,
    /// containers; DNS records at Cloudflare or Route 53; secrets as sensitive variables
    Terraform(ExportArgs),
    /// Terraform for a Kubernetes cluster (hashicorp/kubernetes): the Kubernetes export's
    /// objects as kubernetes_manifest resources, applied server-side
    TerraformKubernetes(ExportArgs),
    /// A Pulumi YAML program for one Docker host (Pulumi's docker provider): networks,
    /// volumes, images, containers; secrets as secret config keys
    Pulumi(ExportArgs),
    /// An Ansible playbook and inventory (community.docker: network, volumes, containers);
    /// secrets from Ansible Vault variables
    Ansible(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// What to export: the configuration, or the platform as it runs (its containers and
    /// the state store; differences from the configuration are reported as drift)
    #[arg(long, value_enum, default_value_t = ExportFrom::Config)]
    pub from: ExportFrom,
    /// Write the files into this directory (nothing is written outside it) instead of
    /// printing; for compose, a path ending in .yml/.yaml names the compose file itself
    #[arg(long, short = 'O', value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With `--from running`: do not visit the runners' hosts (their running runner
    /// containers are not counted, and the daemon's last probe of each host is reported)
    #[arg(long)]
    pub no_runner_hosts: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFrom {
    Config,
    Running,
}

#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Sync all mirrors (or the named ones) now
    Sync { repos: Vec<String> },
    /// List configured mirrors and their last sync
    List,
    /// Add a source to autogit.yml (comments kept): a git URL, github:USER (or ORG with
    /// --org), github:OWNER/REPO (one repository), gitlab:GROUP, or gitlab:GROUP/PROJECT (one
    /// project; --group for a subgroup)
    Add {
        source: String,
        /// The environment variable holding the source's token (never the token itself)
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// github:NAME is an organization, not a user
        #[arg(long)]
        org: bool,
        /// gitlab:PATH/WITH/SLASHES is a subgroup, not a project
        #[arg(long)]
        group: bool,
        /// Another GitLab than gitlab.com, or a GitHub Enterprise API URL
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunnerCommand {
    /// List runners and their hosts
    List,
    /// Find GPU hosts: which of the given hosts or IPv4 ranges answer SSH, their key
    /// fingerprints, and the GPUs and engine of those already trusted
    Discover {
        /// Hosts or IPv4 CIDR ranges (at most 1024 addresses), e.g. 192.168.1.0/24; without
        /// any, hosts running `autogit agent` are found over mDNS
        targets: Vec<String>,
        /// How long to listen for mDNS answers
        #[arg(long, default_value = "3s", value_name = "DURATION")]
        wait: String,
    },
    /// Register a runner with GitLab: create it (`POST /user/runners`, token kept in the
    /// secret store) and run `gitlab-runner register` on its host, the token on stdin.
    /// Idempotent: a registered runner is left alone
    Register {
        /// The runner's `name` in autogit.yml
        name: String,
        #[command(flatten)]
        api: ApiArgs,
        /// GitLab's URL as the runner host reaches it [default: gitlab.external_url]
        #[arg(long, value_name = "URL")]
        runner_url: Option<String>,
    },
    /// Start registered runners when jobs wait for their tags, stop them after
    /// `runners.cooldown` without work (`runners.mode: on-demand`); `autogit daemon` does this
    /// every 30 seconds
    Autoscale {
        /// One pass, then exit (else every 30 seconds until Ctrl-C)
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a registered runner everywhere: in GitLab (`DELETE /runners/:id`), on its host
    /// (its container and the volume holding config.toml) and in autogit's state and secret
    /// store. Idempotent
    Unregister {
        /// The runner's `name` in autogit.yml
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Serve the runner's engine proxy on this runner host: a unix socket passing only the
    /// Docker Engine API calls gitlab-runner's Docker executor needs (pull, create, attach,
    /// start, wait, remove its own containers and cache volumes; no `exec`, no privileged
    /// containers, no host mounts, no other network), refusing the rest with 403. The
    /// on-demand start mounts it as the runner container's /var/run/docker.sock
    /// (`runners.isolation.engine: proxy`). Runs until SIGTERM or Ctrl-C
    EngineProxy {
        /// Where to listen (`runners.isolation.proxy_socket`)
        #[arg(long, default_value = autogit_core::engine_proxy::DEFAULT_PROXY_SOCKET, value_name = "PATH")]
        listen: PathBuf,
        /// The engine's socket (Podman: its Docker-compatible socket)
        #[arg(long, default_value = "/var/run/docker.sock", value_name = "PATH")]
        engine: PathBuf,
        /// A runner on this host (repeatable): its jobs may join its network
        /// `autogit-runner-NAME`
        #[arg(long = "runner", value_name = "NAME", required = true)]
        runners: Vec<String>,
        /// The host is WSL2: jobs may have /dev/dxg and a read-only /usr/lib/wsl
        #[arg(long)]
        wsl2: bool,
    },
    /// Check a GPU host's NVIDIA container toolkit (driver, `nvidia-ctk`, CDI devices, the
    /// engine's runtime) and configure what is missing: `nvidia-ctk runtime configure
    /// --runtime=docker` (then restarts dockerd) and `nvidia-ctk cdi generate`, only the steps
    /// not done yet. A missing driver or toolkit is reported with the exact fix
    /// (Debian/Ubuntu, WSL2); exit 1 while anything is missing
    Prepare {
        /// A runner's name, or a runner host of the configuration
        host: String,
        /// Report only; change nothing
        #[arg(long)]
        check: bool,
    },
    /// Health of every runner host
    Health,
    /// Fetch a host's SSH key (ssh-keyscan), show its fingerprint and trust it. autogit only
    /// talks to hosts whose keys are in its own known_hosts (`<data>/known_hosts`)
    Trust {
        /// Host name or address (`user@` allowed)
        host: String,
        /// Replace keys recorded earlier for this host (after checking the new fingerprint)
        #[arg(long)]
        replace: bool,
    },
}

// Parsed once per run: boxing `Run` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ComputeCommand {
    /// Hosts, GPUs, free VRAM and the queue
    List,
    /// Submit a compute job: place it on a host with the capability, enough GPUs and free
    /// VRAM (best fit, within the user's quota) and start it there, or queue it
    Run {
        /// Distinct GPUs the job needs on one host (0: CPU only)
        #[arg(long, default_value_t = 1)]
        gpus: u32,
        /// Spread the job over N hosts: one part per host (each with --gpus GPUs), all started
        /// together or none, each told AUTOGIT_RANK, AUTOGIT_WORLD_SIZE, AUTOGIT_HOSTS and
        /// MASTER_ADDR; not for services (--port)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(autogit_app::compute::MAX_HOSTS)), conflicts_with = "port")]
        hosts: Option<u32>,
        /// VRAM needed on each GPU, e.g. 8G (default by kind: 8G for inference and render,
        /// 16G for train, 1G without a kind)
        #[arg(long)]
        vram: Option<String>,
        /// The job's kind: only hosts whose runners have this capability, and the kind's
        /// defaults (docs/runners.md "Job kinds")
        #[arg(long, value_parser = ["inference", "render", "train"])]
        capability: Option<String>,
        /// Higher runs first; waiting jobs gain one step per `compute.aging`
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Whose quota (`compute.quotas`) the job counts against
        #[arg(long, env = "USER", default_value = "default")]
        user: String,
        /// When its host stays away past the lease (`compute.lease`): wait for the host and
        /// resume there, or place it again elsewhere once the old copy is stopped (default:
        /// resume for render jobs, reschedule for the others)
        #[arg(long, value_parser = ["resume", "reschedule"])]
        on_lost: Option<String>,
        /// An inference job's port in its container: the job is a long-lived service,
        /// published on its host, health-checked and restarted by the lifecycle policy
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// The service's health path on that port (default /health)
        #[arg(long, requires = "port")]
        health: Option<String>,
        /// Between the service's health checks (default 10s)
        #[arg(long, requires = "port")]
        health_interval: Option<String>,
        /// How long a (re)started service may take to become healthy (default 2m)
        #[arg(long, requires = "port")]
        start_period: Option<String>,
        /// How long the job may run before it is stopped and failed, e.g. 12h (0: no limit;
        /// default by kind: render 24h, train 72h, others none)
        #[arg(long)]
        timeout: Option<String>,
        /// Serve the service at https://NAME.<BASE_DOMAIN> through the ingress (Traefik or nginx)
        /// while it runs, through the guard when the ingress has it
        #[arg(long, value_name = "NAME", requires = "port")]
        route: Option<String>,
        /// Do not send the route's requests through the prompt-injection guard
        #[arg(long, requires = "route")]
        no_guard: bool,
        /// IMAGE [COMMAND...]
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        job: Vec<String>,
    },
    /// Status of a job
    Status { job_id: String },
    /// Cancel a queued or running job (a running one's container is removed on its host)
    Cancel { job_id: String },
}

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Search the logs the daemon indexed (enriched, scrubbed): words, "phrases", -word,
    /// service:, level:, status: (500, 5xx), class:, ip:, url:, request:, trace:, job:
    Search {
        /// The query (several words are one query)
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Only lines from the last RANGE (90s, 15m, 24h, 7d, 2w)
        #[arg(long, value_name = "RANGE")]
        since: Option<String>,
        /// At most this many hits
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        /// Ranking: hybrid (words and meaning, fused), lexical (words, BM25) or semantic
        /// (meaning); semantic and hybrid need logs.semantic.enabled. Default: hybrid when
        /// semantic search is on, else lexical
        #[arg(long, value_parser = ["hybrid", "lexical", "semantic"])]
        mode: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DnsCommand {
    /// Compare the records the platform needs with the zone: what `dns sync` would create,
    /// update and delete, and the names it will not touch (records autogit does not own);
    /// changes nothing
    Plan,
    /// Apply the plan to the zone. Only records autogit owns (marked by an `_autogit.<name>`
    /// TXT record) are changed; a second run has nothing to do. `autogit daemon` runs it every
    /// reconcile interval (at least 5 minutes)
    #[command(alias = "apply")]
    Sync,
}

#[derive(Subcommand, Debug)]
pub enum ExtensionCommand {
    /// The extensions found or enabled (each asked its handshake), their start order, and
    /// the DNS providers by name with where each comes from
    List,
    /// One extension's manifest: version, provider types, the settings each reads (which are
    /// secrets), the environment it inherits, its dependencies
    Info {
        /// The extension's name (its file name in the extensions directory)
        name: String,
    },
    /// Start the extension: its handshake; when it is in EXTENSIONS_ENABLED, `initialize` with
    /// its settings and `health` for each provider type autogit can use; then `shutdown`. Exit
    /// 0 when every answer is healthy
    Check {
        /// The extension's name (its file name in the extensions directory)
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Where the master key is (systemd credential, AUTOGIT_KEY_FILE or <data dir>.key), its id,
    /// and how many secrets are sealed or still plaintext; never a value
    Status,
    /// Make a new master key and seal every secret with it; the old key is removed once every
    /// file is sealed again (an interrupted rotation is finished by the next command). Restart
    /// a running `autogit daemon` service afterwards, and update your escrow copy of the key
    RotateKey,
}

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// The certificate: names, validity, whether renewal is due
    Status,
    /// Get a certificate, or renew it when two thirds of its lifetime have passed
    Renew {
        /// Renew even when not due
        #[arg(long)]
        force: bool,
    },
    /// The internal CA's certificate (TLS_SOURCE=internal), for clients to trust: printed, or
    /// written to --out
    Ca {
        /// Write the PEM to this file instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GitlabCommand {
    /// Create what the configuration names and GitLab lacks: the admin token, users, groups,
    /// service accounts and their tokens (idempotent; `install` runs it)
    Bootstrap {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Rotate every token autogit manages (service accounts, then the admin token)
    RotateTokens {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create a runner in GitLab and store its authentication token (GitLab 17+ flow)
    RunnerToken {
        /// A group runner of this group (full path) instead of an instance runner
        #[arg(long, conflicts_with = "project")]
        group: Option<String>,
        /// A project runner of this project (numeric id)
        #[arg(long)]
        project: Option<u64>,
        /// A tag jobs can select (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Also pick up jobs without tags
        #[arg(long)]
        run_untagged: bool,
        /// Only jobs of protected branches and tags (a deploy runner)
        #[arg(long)]
        protected: bool,
        /// Shown in GitLab's runner list
        #[arg(long, default_value = "autogit runner")]
        description: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Version, health, readiness, users and runners online
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Names of the secrets autogit stores (values only with --show-secrets)
    Secrets {
        /// Print the values too (the initial root password, tokens)
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// GitLab's address as seen from this host
    /// [default: http://127.0.0.1:<gitlab.ports.http>]
    #[arg(long, env = "AUTOGIT_GITLAB_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// Output format of `guard check`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckOutput {
    /// Human-readable summary.
    #[default]
    Text,
    /// The full analysis as JSON.
    Json,
}

/// Output format of `guard scan-repo`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanFormat {
    /// `path:line:column: level[rule]: message`.
    #[default]
    Text,
    /// The report as JSON.
    Json,
    /// SARIF 2.1.0 (for code-scanning uploads).
    Sarif,
}

/// Thresholds shared by `check`, `eval` and `serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ThresholdArgs {
    /// Risk at or above which a text is suspicious [default: 0.35, or what `guard calibrate`
    /// fitted].
    #[arg(long, value_name = "RISK")]
    pub suspicious_threshold: Option<f64>,
    /// Risk at or above which a text is blocked [default: 0.7, or what `guard calibrate`
    /// fitted].
    #[arg(long, value_name = "RISK")]
    pub block_threshold: Option<f64>,
    /// Skip stage 4 (the n-gram classifier); rules only.
    #[arg(long)]
    pub no_model: bool,
}

/// Review states accepted by `quarantine list --status`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    /// Awaiting review.
    Pending,
    /// Released as a false positive.
    Released,
    /// Confirmed as an attack.
    Confirmed,
}

/// `autogit guard quarantine …`
#[derive(clap::Subcommand, Debug)]
pub enum QuarantineAction {
    /// List quarantined texts, newest first.
    List {
        /// Only records in this state.
        #[arg(long)]
        status: Option<StatusArg>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one record in full (JSON, the platform spec's shape).
    Show {
        /// Record id, `q-YYYYMMDD-NNN`.
        id: String,
    },
    /// Mark a record as a false positive (`guard model refit` learns it as benign).
    Release {
        /// Record id.
        id: String,
    },
    /// Mark a record as a confirmed attack (`guard model refit` learns it as an attack).
    Confirm {
        /// Record id.
        id: String,
    },
    /// Delete a record.
    Delete {
        /// Record id.
        id: String,
    },
}

/// `autogit guard model …`
#[derive(clap::Subcommand, Debug)]
pub enum ModelAction {
    /// Refit the shipped model to the reviewed quarantine records (released = benign,
    /// confirmed = attack) into <data>/guard/model.txt; prints the figures before and after.
    Refit {
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// Remove the local model: the shipped one is used again.
    Rollback,
    /// Which model and thresholds are in use.
    Status,
}

/// `autogit guard …`: prompt-injection filter.
#[derive(clap::Subcommand, Debug)]
pub enum GuardCommand {
    /// Analyse a text for prompt injection; exit 0 clean, 10 suspicious, 11 blocked.
    Check {
        /// File to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Output format (the global `--output json` also selects JSON).
        #[arg(id = "check_format", long = "format", value_enum, default_value_t)]
        output: CheckOutput,
        /// Do not store suspicious or blocked texts in the quarantine.
        #[arg(long)]
        no_quarantine: bool,
        /// Source label stored with a quarantine record.
        #[arg(long, default_value = "cli")]
        source: String,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// Review quarantined texts.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Scan a repository for Trojan Source bidi controls, invisible characters and homoglyph
    /// identifiers; exit 10 when something should fail CI.
    ScanRepo {
        /// Repository (or file) to scan; `.gitignore` is honoured.
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ScanFormat,
    },
    /// Measure detection on a labelled dataset (CSV or JSONL with `text` and `label`).
    Eval {
        /// Dataset file (`.csv`, otherwise JSONL).
        file: PathBuf,
        /// Risk at or above which a text counts as detected [default: the suspicious threshold].
        #[arg(long)]
        threshold: Option<f64>,
        /// Also list the misclassified examples.
        #[arg(long)]
        show_misses: bool,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// Fit the suspicious and block thresholds to your own benign traffic (at most 2% and 0.5%
    /// of it flagged; never below the shipped defaults); written to <data>/guard/thresholds.json
    /// and used by check, eval and serve where no flag sets them.
    Calibrate {
        /// Benign texts: JSONL with `text` (rows labelled as attacks are skipped) or one text
        /// per line.
        #[arg(required_unless_present = "reset")]
        file: Option<PathBuf>,
        /// Remove the fitted thresholds (back to the shipped defaults).
        #[arg(long, conflicts_with = "file")]
        reset: bool,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// The stage-4 model: refit it to the quarantine reviews, roll back, or show which is used.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Serve the filter over HTTP: Traefik forward-auth at /guard/forward-auth, and a reverse
    /// proxy to --upstream for everything else.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// Inference API to proxy to, e.g. http://127.0.0.1:11434; or HOST=URL (repeatable)
        /// to choose it by the request's Host, as the ingress's platform.guard_proxy sends them.
        #[arg(long)]
        upstream: Vec<String>,
        /// Also inspect system/developer messages.
        #[arg(long)]
        scan_system: bool,
        /// Do not store suspicious or blocked prompts.
        #[arg(long)]
        no_quarantine: bool,
        #[command(flatten)]
        limits: ServeLimitArgs,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
}

/// Authentication and resource limits of `guard serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeLimitArgs {
    /// More HOST=URL upstreams, one a line, read again whenever the file changes: the routes
    /// of inference services that autogit writes to <data>/rendered/guard/upstreams.
    #[arg(long, value_name = "FILE")]
    pub upstream_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// File holding the shared secret every route but /healthz requires (mode 0600); clients
    /// send it as `Proxy-Authorization: Bearer TOKEN` or `X-Autogit-Guard-Token: TOKEN`.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_token_env")]
    pub auth_token_file: Option<PathBuf>,
    /// Name of the environment variable holding that secret.
    #[arg(long, value_name = "NAME")]
    pub auth_token_env: Option<String>,
    /// Listen beyond loopback without a token (only when something in front authenticates).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Seconds for a request's headers to arrive before the connection is closed.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,
    /// Seconds for a request's body to arrive (then 408).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub body_timeout: u64,
    /// Open connections at most (more get 503).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Request body bytes held in memory at once, over all requests (more get 503 with
    /// Retry-After); never less than --max-body-bytes.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_inflight_body_bytes: usize,
    /// Quarantine quota: most records (then released records are evicted oldest first, and
    /// new ones refused when none is left to evict).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub quarantine_max_items: u64,
    /// Quarantine quota: most bytes.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub quarantine_max_bytes: u64,
    /// Requests per second per client address (0: unlimited); more get 429 with Retry-After.
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    pub rate_limit: f64,
    /// Requests a client may send at once before --rate-limit applies.
    #[arg(long, default_value_t = 40.0, value_name = "N")]
    pub rate_burst: f64,
}

impl ThresholdArgs {
    /// Which thresholds the flags set (suspicious, block); the others may come from
    /// `guard calibrate`.
    pub fn explicit(&self) -> (bool, bool) {
        (
            self.suspicious_threshold.is_some(),
            self.block_threshold.is_some(),
        )
    }

    pub fn config(&self) -> autogit_guard::GuardConfig {
        let d = autogit_guard::GuardConfig::default();
        autogit_guard::GuardConfig {
            suspicious_threshold: self.suspicious_threshold.unwrap_or(d.suspicious_threshold),
            block_threshold: self.block_threshold.unwrap_or(d.block_threshold),
            enable_model: !self.no_model,
            ..d
        }
    }
}

impl ServeLimitArgs {
    /// The server's options from these flags; the token is read here (file or variable).
    pub fn options(
        &self,
        upstream: &[String],
        scan_system: bool,
    ) -> Result<autogit_guard_service::server::ServeOptions, autogit_guard_service::ServiceError>
    {
        let (upstream, upstream_hosts) = autogit_guard_service::server::parse_upstreams(upstream)?;
        use autogit_guard_service::limits::AuthToken;
        let auth_token = match (&self.auth_token_file, &self.auth_token_env) {
            (Some(path), _) => Some(AuthToken::from_file(path)?),
            (None, Some(name)) => Some(AuthToken::from_env(name)?),
            (None, None) => None,
        };
        Ok(autogit_guard_service::server::ServeOptions {
            upstream,
            upstream_hosts,
            upstream_file: self
                .upstream_file
                .as_ref()
                .map(autogit_guard_service::server::UpstreamFile::new),
            max_body_bytes: self.max_body_bytes,
            scan_system,
            auth_token,
            insecure_no_auth: self.insecure_no_auth,
            header_timeout: std::time::Duration::from_secs(self.header_timeout.max(1)),
            body_timeout: std::time::Duration::from_secs(self.body_timeout.max(1)),
            max_connections: self.max_connections.max(1),
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            quarantine_quota: Some(autogit_guard_service::store::Quota {
                max_items: self.quarantine_max_items,
                max_bytes: self.quarantine_max_bytes,
            }),
            rate_per_sec: self.rate_limit,
            rate_burst: self.rate_burst,
        })
    }
}

/// A role of the REST API.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

impl RoleArg {
    pub fn role(self) -> autogit_core::access::Role {
        use autogit_core::access::Role;
        match self {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (only JSON when --json or stdout is not a terminal)
    Create {
        /// What the key is for (shown by `list`)
        name: String,
        /// What the key may do
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Limit the key to an API area, e.g. services, dns (repeatable; none: every area)
        #[arg(long = "scope", value_name = "AREA")]
        scopes: Vec<String>,
        /// Expire after this long, e.g. 90d, 12h [default: never]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets)
    List {
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, and the tokens issued from it
    Revoke {
        /// The key's prefix as `list` shows it (agk_1a2b3c4d or 1a2b3c4d)
        prefix: String,
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiUserCommand {
    /// Add a user; the password is asked on the terminal (twice), or read from stdin
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users
    List {
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
    /// Remove a user
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Make a new token signing key current; tokens signed by the previous one stay valid
    /// until they expire (24 h at most)
    RotateSigningKey,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain; exits 1 and names the first bad record when it is broken
    Verify {
        /// A log to check [default: the data dir's audit/audit.jsonl]; a head file next to it
        /// is checked too
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// JSON output (as --output json)
        #[arg(long)]
        json: bool,
    },
}
