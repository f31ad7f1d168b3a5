//! Raw command-line values → a validated [`Config`]. Nothing here binds a port or starts a task,
//! so tests build configs freely. Every error names the flag it is about.

use crate::auth::{JwtSecret, SecretError};
use crate::cli::{GetPayloadMode, RunArgs};
use crate::policy::PolicySource;
use crate::queue::Limits;
use crate::route::MAX_EL_TIMEOUT;
use crate::serve::ConnLimits;
use crate::straggler::Straggler;
use crate::upstream::AnswerLimits;
use policy_sdk::abi::MAX_VOTES;
use policy_sdk::ClientCode;
use reqwest::{Certificate, Url};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Connections the admin API serves at once: a few operators, scrapers and scripts.
pub const ADMIN_CONNECTIONS: usize = 32;

/// Everything eb runs with.
#[derive(Debug)]
pub struct Config {
    /// The ELs, in `--nodes` order.
    pub nodes: Vec<NodeConfig>,
    /// What nodes added at run time get when their spec does not say.
    pub node_defaults: NodeDefaults,
    /// The CL's secret.
    pub cl_secret: JwtSecret,
    /// Engine API address.
    pub listen: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Who may make mutating admin calls.
    pub admin_auth: AdminAuth,
    /// What a node added through the admin API may use as its secret.
    pub added_secrets: AddedSecrets,
    /// The policy module.
    pub policy: PolicySource,
    /// The policy's config string (with `--fcu-majority` folded in).
    pub policy_config: String,
    /// `--shadow-policy`: decides beside the active policy, never answers.
    pub shadow_policy: Option<PolicySource>,
    /// Largest CL request body, in bytes.
    pub max_body: usize,
    /// Time a request has to send its body once its headers are in.
    pub body_timeout: Duration,
    /// The Engine API's connection limits (before the open-files limit is applied).
    pub engine_connections: ConnLimits,
    /// The admin API's connection limits (before the open-files limit is applied).
    pub admin_connections: ConnLimits,
    /// getPayload strategy.
    pub get_payload: GetPayloadMode,
    /// Health check period.
    pub health_interval: Duration,
    /// `--record-votes`.
    pub record_votes: Option<std::path::PathBuf>,
    /// Size at which the recording rotates.
    pub record_max_bytes: u64,
    /// `--policy-fixtures`: replayed before every reload.
    pub policy_fixtures: Option<std::path::PathBuf>,
    /// `--etcd`, `--cluster`, `--replica`: what replicas share, and where.
    pub cluster: ClusterConfig,
}

/// The cluster this eb is a replica of (standalone without etcd endpoints).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd client URLs (empty: standalone).
    pub etcd: Vec<String>,
    /// `#ca=PATH` of the etcd URLs: the only CA their certificates may chain to.
    pub ca: Option<Certificate>,
    /// The key prefix the cluster's replicas share.
    pub name: String,
    /// This replica's name.
    pub replica: String,
    /// Most an answer waits for etcd.
    pub timeout: Duration,
}

impl ClusterConfig {
    fn from_args(args: &RunArgs, listen: SocketAddr) -> Result<ClusterConfig, ConfigError> {
        let mut etcd = Vec::with_capacity(args.etcd.len());
        let mut ca: Option<(String, Certificate)> = None;
        for spec in &args.etcd {
            let mut parts = spec.trim().split('#');
            let url = Url::parse(parts.next().unwrap_or_default())
                .map_err(|e| error("etcd", format!("{spec}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(error(
                    "etcd",
                    format!("{}: not an http(s) URL", redact(&url)),
                ));
            }
            for option in parts {
                let Some(path) = option.strip_prefix("ca=") else {
                    return Err(error(
                        "etcd",
                        format!("{}: unknown option #{option}", redact(&url)),
                    ));
                };
                if url.scheme() != "https" {
                    return Err(error(
                        "etcd",
                        format!("{}: #ca is for https URLs", redact(&url)),
                    ));
                }
                match &ca {
                    Some((seen, _)) if seen != path => {
                        return Err(error("etcd", "every etcd URL must name the same #ca"));
                    }
                    Some(_) => {}
                    None => {
                        let cert = read_ca(Path::new(path)).map_err(|e| error("etcd", e))?;
                        ca = Some((path.to_owned(), cert));
                    }
                }
            }
            etcd.push(url.as_str().trim_end_matches('/').to_owned());
        }
        let name = args.cluster.trim();
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(error(
                "cluster",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        let replica = args.replica.clone().unwrap_or_else(|| listen.to_string());
        if replica.is_empty() || replica.len() > 128 || replica.chars().any(char::is_control) {
            return Err(error("replica", "must be 1 to 128 printable characters"));
        }
        if !(10..=5000).contains(&args.etcd_timeout_ms) {
            return Err(error("etcd-timeout-ms", "must be between 10 and 5000 ms"));
        }
        Ok(ClusterConfig {
            etcd,
            ca: ca.map(|(_, cert)| cert),
            name: name.to_owned(),
            replica,
            timeout: Duration::from_millis(args.etcd_timeout_ms),
        })
    }
}

/// One EL.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its Engine API URL.
    pub url: Url,
    /// Its JWT secret.
    pub secret: JwtSecret,
    /// The file it was read from (`None`: the CL's secret, `--jwt-secret`).
    pub secret_path: Option<PathBuf>,
    /// Its timeout (capped per call below the CL's deadline).
    pub timeout: Duration,
    /// Observed and voting, never counted by the default rule, never primary.
    pub do_not_use: bool,
    /// How long a verdict waits for it once the others decide (`#straggler=`).
    pub straggler: Straggler,
    /// Its call queue's bounds.
    pub queue: Limits,
    /// How large its answers may be.
    pub answers: AnswerLimits,
    /// `#ca=PATH`: the only CA its TLS certificate may chain to (an `https` URL otherwise
    /// uses the system's roots).
    pub ca: Option<Certificate>,
    /// `#client=XX`: the client code its votes carry until it names itself through
    /// `engine_getClientVersionV1` (for ELs that do not implement it).
    pub client: Option<ClientCode>,
}

/// What a node spec does not say: the `--jwt-secret`, `--timeout`, `--straggler` and
/// `--queue-mib` of the command line.
#[derive(Clone, Debug)]
pub struct NodeDefaults {
    /// The secret of nodes without `#jwt-secret`.
    pub secret: JwtSecret,
    /// The timeout of nodes without `#timeout`.
    pub timeout: Duration,
    /// The straggler setting of nodes without `#straggler`.
    pub straggler: Straggler,
    /// Every node's queue bounds.
    pub queue: Limits,
    /// Every node's answer size limits.
    pub answers: AnswerLimits,
}

/// Who may make mutating admin calls.
#[derive(Clone, Debug)]
pub enum AdminAuth {
    /// Holders of this token (read from its file).
    Token(AdminToken),
    /// Holders of the token eb writes to this file when it starts (it does not exist yet).
    Create(PathBuf),
    /// Anyone who reaches the (loopback) admin API: `--admin-no-token`, executionbackup's way.
    Open,
}

/// The rules for the secret of a node added through the admin API, so that an admin call
/// cannot make eb sign tokens for another EL's (or the CL's) secret and hand them to a URL of
/// its choosing.
#[derive(Clone, Debug)]
pub struct AddedSecrets {
    /// Its `#jwt-secret` file must be in one of these directories (canonical paths).
    pub dirs: Vec<PathBuf>,
    /// It may share a secret with the CL or another node (`--allow-shared-secrets`).
    pub shared: bool,
    /// The CL's secret's fingerprint (a node without `#jwt-secret` would use that secret).
    pub cl: [u8; 32],
}

impl AddedSecrets {
    /// Checks where `node`'s secret comes from; sharing is checked against the node set.
    pub fn check_source(&self, node: &NodeConfig) -> Result<(), String> {
        let name = redact(&node.url);
        let Some(path) = &node.secret_path else {
            return if self.shared {
                Ok(())
            } else {
                Err(format!(
                    "{name}: a node added at run time names its own #jwt-secret \
                     (without one it would get the CL's secret; --allow-shared-secrets permits it)"
                ))
            };
        };
        let real = path
            .canonicalize()
            .map_err(|e| format!("{name}: cannot resolve {}: {e}", path.display()))?;
        if self.dirs.iter().any(|dir| real.starts_with(dir)) {
            Ok(())
        } else {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            Err(format!(
                "{name}: {} is outside the secret directories ({}; --admin-secrets-dir)",
                path.display(),
                dirs.join(", ")
            ))
        }
    }
}

/// Where the admin token is kept when `--admin-token` is not given: systemd's
/// `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/eb`, else `~/.local/state/eb`.
fn default_token_path() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("STATE_DIRECTORY")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("eb")))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/eb")))?;
    Some(dir.join("admin-token"))
}

/// The admin bearer token, zeroized on drop.
#[derive(Clone)]
pub struct AdminToken(Zeroizing<String>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads a token file (at least 16 characters once trimmed).
    pub fn read(path: &Path) -> Result<AdminToken, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "{}: the token must be at least 16 characters",
                path.display()
            ));
        }
        Ok(AdminToken(Zeroizing::new(token.to_owned())))
    }

    /// Writes a fresh random token (32 bytes, hex) to `path`, readable by eb's user only;
    /// its directory is made (mode 0700) if missing. Never overwrites a file.
    pub fn create(path: &Path) -> Result<AdminToken, String> {
        use ring::rand::{SecureRandom, SystemRandom};
        let failed = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| "no system randomness for the admin token".to_owned())?;
        let token = Zeroizing::new(hex::encode(bytes.as_ref()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(failed)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(failed)?;
        std::io::Write::write_all(&mut file, format!("{}\n", token.as_str()).as_bytes())
            .map_err(failed)?;
        Ok(AdminToken(Zeroizing::new(token.to_string())))
    }

    /// Whether an `Authorization` header carries this token (constant-time comparison).
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A configuration error: which flag, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct ConfigError {
    /// The flag, without dashes.
    pub flag: &'static str,
    /// What is wrong.
    pub message: String,
}

fn error(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

/// A URL with credentials and query removed, for logs and `/status`.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let text = shown.to_string();
    if url.username().is_empty() && url.password().is_none() {
        text
    } else {
        text.replacen("://", "://***@", 1)
    }
}

fn read_secret(flag: &'static str, path: &Path) -> Result<JwtSecret, ConfigError> {
    JwtSecret::read(path).map_err(|e| match e {
        SecretError::Read { .. } | SecretError::Malformed { .. } => error(flag, e.to_string()),
    })
}

/// Reads a PEM CA certificate for `#ca=`.
fn read_ca(path: &Path) -> Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{}: not a PEM certificate", path.display()));
    }
    Certificate::from_pem(&pem)
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))
}

impl NodeConfig {
    /// Parses `URL[#jwt-secret=PATH][#timeout=MS][#straggler=auto|wait|MS][#ca=PATH][#client=XX]
    /// [#do-not-use]`.
    pub fn parse(spec: &str, defaults: &NodeDefaults) -> Result<NodeConfig, String> {
        let mut parts = spec.trim().split('#');
        let url_text = parts.next().unwrap_or_default();
        let url = Url::parse(url_text).map_err(|e| format!("{url_text:?} is not a URL: {e}"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(format!("{}: unsupported scheme {other:?}", redact(&url))),
        }
        let mut node = NodeConfig {
            url,
            secret: defaults.secret.clone(),
            secret_path: None,
            timeout: defaults.timeout,
            do_not_use: false,
            straggler: defaults.straggler,
            queue: defaults.queue,
            answers: defaults.answers,
            ca: None,
            client: None,
        };
        for option in parts {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "jwt-secret" => {
                    node.secret = JwtSecret::read(Path::new(value)).map_err(|e| e.to_string())?;
                    node.secret_path = Some(PathBuf::from(value));
                }
                "timeout" => {
                    let ms: u64 = value.parse().map_err(|_| {
                        format!("timeout {value:?} is not a number of milliseconds")
                    })?;
                    node.timeout = Duration::from_millis(ms);
                }
                "straggler" => node.straggler = value.parse()?,
                "ca" => node.ca = Some(read_ca(Path::new(value))?),
                "client" => {
                    let code = ClientCode::from_letters(value).ok_or_else(|| {
                        format!("client {value:?} is not a two-letter client code (GE, NM, BU…)")
                    })?;
                    node.client = Some(code);
                }
                "do-not-use" if value.is_empty() => node.do_not_use = true,
                _ => return Err(format!("unknown node option {option:?}")),
            }
        }
        if node.ca.is_some() && node.url.scheme() != "https" {
            return Err(format!("{}: #ca is for https URLs", redact(&node.url)));
        }
        if node.timeout.is_zero() || node.timeout > MAX_EL_TIMEOUT {
            return Err(format!(
                "{}: timeout {} ms must be between 1 and {} ms (below the CL's deadline)",
                redact(&node.url),
                node.timeout.as_millis(),
                MAX_EL_TIMEOUT.as_millis()
            ));
        }
        Ok(node)
    }
}

impl Config {
    /// Validates raw arguments.
    pub fn from_args(args: &RunArgs) -> Result<Config, ConfigError> {
        let secret_path = args
            .jwt_secret
            .as_deref()
            .ok_or_else(|| error("jwt-secret", "required: the CL's JWT secret file"))?;
        let cl_secret = read_secret("jwt-secret", secret_path)?;
        let default_timeout = Duration::from_millis(args.timeout);
        if default_timeout.is_zero() || default_timeout > MAX_EL_TIMEOUT {
            return Err(error(
                "timeout",
                format!(
                    "{} ms must be between 1 and {} ms (below the CL's deadline)",
                    args.timeout,
                    MAX_EL_TIMEOUT.as_millis()
                ),
            ));
        }
        let specs: Vec<&str> = args
            .nodes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if specs.is_empty() {
            return Err(error(
                "nodes",
                "required: at least one execution client URL",
            ));
        }
        if specs.len() > MAX_VOTES {
            return Err(error(
                "nodes",
                format!(
                    "at most {MAX_VOTES} execution clients (one policy ballot holds that many)"
                ),
            ));
        }
        let straggler = args
            .straggler
            .parse()
            .map_err(|e: String| error("straggler", e))?;
        if args.queue_mib == 0 || args.queue_mib > 4096 {
            return Err(error("queue-mib", "must be between 1 and 4096"));
        }
        if args.max_vote_answer_kib < 4 || args.max_vote_answer_kib > 64 << 10 {
            return Err(error("max-vote-answer-kib", "must be between 4 and 65536"));
        }
        if args.max_answer_mib == 0 || args.max_answer_mib > 4096 {
            return Err(error("max-answer-mib", "must be between 1 and 4096"));
        }
        let node_defaults = NodeDefaults {
            secret: cl_secret.clone(),
            timeout: default_timeout,
            straggler,
            queue: Limits {
                bytes: args.queue_mib << 20,
                ..Limits::default()
            },
            answers: AnswerLimits {
                vote: args.max_vote_answer_kib << 10,
                other: args.max_answer_mib << 20,
            },
        };
        let mut nodes: Vec<NodeConfig> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let node = NodeConfig::parse(spec, &node_defaults)
                .map_err(|m| error("nodes", format!("node {i}: {m}")))?;
            if nodes.iter().any(|n| n.url == node.url) {
                return Err(error(
                    "nodes",
                    format!("node {i}: {} is listed twice", redact(&node.url)),
                ));
            }
            nodes.push(node);
        }
        let admin_auth = if args.admin_no_token {
            if !args.admin_addr.ip().is_loopback() {
                return Err(error(
                    "admin-addr",
                    format!(
                        "{} is not a loopback address: --admin-no-token is for loopback only",
                        args.admin_addr
                    ),
                ));
            }
            AdminAuth::Open
        } else {
            let path = args
                .admin_token
                .clone()
                .or_else(default_token_path)
                .ok_or_else(|| {
                    error(
                        "admin-token",
                        "no state directory ($HOME unset): name a token file",
                    )
                })?;
            if path.exists() {
                AdminAuth::Token(AdminToken::read(&path).map_err(|e| error("admin-token", e))?)
            } else {
                AdminAuth::Create(path)
            }
        };
        let secret_dirs = if args.admin_secrets_dir.is_empty() {
            let mut dirs = vec![secret_path.to_owned()];
            dirs.extend(nodes.iter().filter_map(|n| n.secret_path.clone()));
            let mut dirs: Vec<PathBuf> = dirs
                .iter()
                .filter_map(|p| p.canonicalize().ok()?.parent().map(Path::to_owned))
                .collect();
            dirs.sort();
            dirs.dedup();
            dirs
        } else {
            let mut dirs = Vec::new();
            for dir in &args.admin_secrets_dir {
                let real = dir
                    .canonicalize()
                    .map_err(|e| error("admin-secrets-dir", format!("{}: {e}", dir.display())))?;
                dirs.push(real);
            }
            dirs
        };
        let added_secrets = AddedSecrets {
            dirs: secret_dirs,
            shared: args.allow_shared_secrets,
            cl: cl_secret.fingerprint(),
        };
        let mut policy_config = args.policy_config.trim().to_owned();
        if let Some(majority) = &args.fcu_majority {
            if policy_config.contains("majority=") {
                return Err(error(
                    "fcu-majority",
                    "the majority is also set in --policy-config",
                ));
            }
            if !policy_config.is_empty() {
                policy_config.push(',');
            }
            policy_config.push_str("majority=");
            policy_config.push_str(majority.trim());
        }
        if args.max_body_mib == 0 || args.max_body_mib > 1024 {
            return Err(error("max-body-mib", "must be between 1 and 1024"));
        }
        if args.max_connections == 0 || args.max_connections > 65_536 {
            return Err(error("max-connections", "must be between 1 and 65536"));
        }
        let millis = |flag, ms: u64| {
            if (100..=600_000).contains(&ms) {
                Ok(Duration::from_millis(ms))
            } else {
                Err(error(flag, "must be between 100 and 600000 ms"))
            }
        };
        let header_timeout = millis("header-timeout-ms", args.header_timeout_ms)?;
        let body_timeout = millis("body-timeout-ms", args.body_timeout_ms)?;
        if args.health_interval == 0 || args.health_interval > 3600 {
            return Err(error(
                "health-interval",
                "must be between 1 and 3600 seconds",
            ));
        }
        let listen = SocketAddr::new(args.listen_addr, args.port);
        Ok(Config {
            cluster: ClusterConfig::from_args(args, listen)?,
            nodes,
            node_defaults,
            cl_secret,
            listen,
            admin: args.admin_addr,
            admin_auth,
            added_secrets,
            policy: args
                .policy
                .clone()
                .map_or(PolicySource::Embedded, PolicySource::File),
            policy_config,
            shadow_policy: args.shadow_policy.clone().map(PolicySource::File),
            max_body: args.max_body_mib << 20,
            body_timeout,
            engine_connections: ConnLimits {
                max_connections: args.max_connections,
                header_timeout,
            },
            admin_connections: ConnLimits {
                max_connections: ADMIN_CONNECTIONS,
                header_timeout,
            },
            get_payload: args.get_payload,
            health_interval: Duration::from_secs(args.health_interval),
            record_votes: args.record_votes.clone(),
            record_max_bytes: args.record_max_mib.max(1) << 20,
            policy_fixtures: args.policy_fixtures.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    /// A file of its own for each call (tests run in parallel).
    fn temp(name: &str, content: &str) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("eb-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    }

    fn config(extra: &[&str]) -> Result<Config, ConfigError> {
        let secret = temp("cl.hex", &"11".repeat(32));
        let mut argv = vec!["eb", "--jwt-secret", &secret];
        argv.extend_from_slice(extra);
        Config::from_args(&Cli::try_parse_from(argv).expect("parses").run)
    }

    fn message(extra: &[&str]) -> String {
        config(extra)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn parses_executionbackup_node_specs() {
        let el = temp("el.hex", &format!("0x{}", "22".repeat(32)));
        let nodes = format!(
            "http://127.0.0.1:8551,http://127.0.0.1:8552#jwt-secret={el}#timeout=2000#do-not-use"
        );
        let c = config(&["--nodes", &nodes, "--fcu-majority", "0.75"]).expect("valid");
        assert_eq!(c.nodes.len(), 2);
        assert!(!c.nodes[0].do_not_use && c.nodes[1].do_not_use);
        assert_eq!(c.nodes[0].timeout, Duration::from_millis(7500));
        assert_eq!(c.nodes[1].timeout, Duration::from_millis(2000));
        assert_eq!(c.policy_config, "majority=0.75");
        assert_eq!(c.listen, "127.0.0.1:7000".parse().expect("addr"));
    }

    #[test]
    fn cluster_flags_parse_and_bad_ones_are_named() {
        let n = ["--nodes", "http://127.0.0.1:8551"];
        let summary = |c: Config| {
            let c = c.cluster;
            (c.etcd, c.ca.is_some(), c.name, c.replica, c.timeout)
        };
        assert_eq!(
            summary(config(&n).expect("valid")),
            (
                vec![],
                false,
                "eb".into(),
                "127.0.0.1:7000".into(),
                Duration::from_millis(200)
            )
        );
        const PEM: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let ca = temp("etcd-ca.pem", PEM);
        let etcd = format!("http://10.0.0.1:2379/,https://10.0.0.2:2379#ca={ca}");
        let clustered = config(&[
            n[0],
            n[1],
            "--etcd",
            &etcd,
            "--cluster",
            "main-net.1",
            "--replica",
            "host-a",
            "--etcd-timeout-ms",
            "50",
        ]);
        assert_eq!(
            summary(clustered.expect("valid")),
            (
                vec![
                    "http://10.0.0.1:2379".into(),
                    "https://10.0.0.2:2379".into()
                ],
                true,
                "main-net.1".into(),
                "host-a".into(),
                Duration::from_millis(50)
            )
        );
        let other_ca = temp("etcd-ca2.pem", PEM);
        let two_cas = format!("https://a:1#ca={ca},https://b:1#ca={other_ca}");
        assert_eq!(
            message(&[n[0], n[1], "--etcd", &two_cas]),
            "--etcd: every etcd URL must name the same #ca"
        );
        let cases: [(&[&str], &str); 7] = [
            (
                &["--etcd", "not a url"],
                "--etcd: not a url: relative URL without a base",
            ),
            (
                &["--etcd", "ftp://a:1"],
                "--etcd: ftp://a:1/: not an http(s) URL",
            ),
            (
                &["--etcd", "http://a:1#ca=/x"],
                "--etcd: http://a:1/: #ca is for https URLs",
            ),
            (
                &["--etcd", "http://a:1#lease=5"],
                "--etcd: http://a:1/: unknown option #lease=5",
            ),
            (
                &["--cluster", "a/b"],
                "--cluster: must be 1 to 64 letters, digits, '-', '_' or '.'",
            ),
            (
                &["--replica", ""],
                "--replica: must be 1 to 128 printable characters",
            ),
            (
                &["--etcd-timeout-ms", "5"],
                "--etcd-timeout-ms: must be between 10 and 5000 ms",
            ),
        ];
        for (flags, expected) in cases {
            let mut argv = n.to_vec();
            argv.extend_from_slice(flags);
            assert_eq!(message(&argv), expected, "{flags:?}");
        }
    }

    #[test]
    fn a_node_may_declare_its_client_code() {
        let c = config(&[
            "--nodes",
            "http://127.0.0.1:8551#client=ej,http://127.0.0.1:8552",
        ])
        .expect("valid");
        assert_eq!(c.nodes[0].client, ClientCode::from_letters("EJ"));
        assert_eq!(c.nodes[1].client, None);
    }

    #[test]
    fn every_bad_flag_gets_a_one_line_error_naming_it() {
        let n = ["--nodes", "http://127.0.0.1:8551"];
        let cases: [(&[&str], &str); 14] = [
            (&[], "--nodes: required"),
            (
                &["--nodes", "not a url"],
                "--nodes: node 0: \"not a url\" is not a URL",
            ),
            (
                &["--nodes", "http://a:1,http://a:1"],
                "--nodes: node 1: http://a:1/ is listed twice",
            ),
            (
                &["--nodes", "http://a:1#timeout=9000"],
                "--nodes: node 0: http://a:1/: timeout 9000 ms",
            ),
            (
                &["--nodes", "http://a:1#jwt-secret=/no/such"],
                "--nodes: node 0: cannot read /no/such",
            ),
            (
                &["--nodes", "http://a:1#colour=red"],
                "--nodes: node 0: unknown node option",
            ),
            (
                &["--nodes", "http://a:1#client=ethereumjs"],
                "--nodes: node 0: client \"ethereumjs\" is not a two-letter client code",
            ),
            (
                &["--nodes", "http://a:1#ca=/etc/hostname"],
                "--nodes: node 0: /etc/hostname: not a PEM certificate",
            ),
            (
                &[n[0], n[1], "--timeout", "8000"],
                "--timeout: 8000 ms must be between",
            ),
            (
                &[
                    n[0],
                    n[1],
                    "--admin-addr",
                    "0.0.0.0:7001",
                    "--admin-no-token",
                ],
                "--admin-addr: 0.0.0.0:7001 is not a loopback",
            ),
            (
                &[n[0], n[1], "--admin-secrets-dir", "/no/such/dir"],
                "--admin-secrets-dir: /no/such/dir",
            ),
            (
                &[n[0], n[1], "--header-timeout-ms", "5"],
                "--header-timeout-ms: must be between",
            ),
            (
                &[n[0], n[1], "--max-vote-answer-kib", "0"],
                "--max-vote-answer-kib: must be between",
            ),
            (
                &[
                    n[0],
                    n[1],
                    "--policy-config",
                    "majority=0.7",
                    "--fcu-majority",
                    "0.6",
                ],
                "--fcu-majority:",
            ),
        ];
        for (args, expected) in cases {
            let got = message(args);
            assert!(got.starts_with(expected), "{args:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
        let bad_secret = temp("bad.hex", "0x1234");
        let got = Config::from_args(
            &Cli::try_parse_from(["eb", "--jwt-secret", &bad_secret, "--nodes", n[1]])
                .expect("parses")
                .run,
        )
        .expect_err("a malformed secret is refused")
        .to_string();
        assert!(
            got.starts_with("--jwt-secret:") && got.contains("32-byte hex"),
            "{got}"
        );
        let missing = Config::from_args(
            &Cli::try_parse_from(["eb", "--nodes", n[1]])
                .expect("parses")
                .run,
        );
        assert!(missing
            .expect_err("no secret is refused")
            .to_string()
            .starts_with("--jwt-secret: required"));
    }

    #[test]
    fn the_admin_token_is_made_once_and_read_after() {
        let dir = std::path::PathBuf::from(temp("x", "")).with_file_name("state");
        let path = dir.join("admin-token");
        let path_text = path.display().to_string();
        let c = config(&["--nodes", "http://a:1", "--admin-token", &path_text]).expect("valid");
        assert!(
            matches!(&c.admin_auth, AdminAuth::Create(p) if *p == path),
            "not made yet"
        );
        let made = AdminToken::create(&path).expect("created");
        assert!(AdminToken::create(&path).is_err(), "never overwritten");
        let text = std::fs::read_to_string(&path).expect("written");
        assert_eq!(text.trim().len(), 64);
        assert!(made.accepts(Some(&format!("Bearer {}", text.trim()))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let c = config(&["--nodes", "http://a:1", "--admin-token", &path_text]).expect("valid");
        assert!(
            matches!(&c.admin_auth, AdminAuth::Token(t) if t.accepts(Some(&format!("Bearer {}", text.trim()))))
        );
        let c = config(&["--nodes", "http://a:1", "--admin-no-token"]).expect("valid");
        assert!(matches!(c.admin_auth, AdminAuth::Open));
    }

    #[test]
    fn an_added_node_takes_its_secret_from_the_secret_directories_only() {
        let el = temp("el.hex", &"22".repeat(32));
        let c = config(&["--nodes", &format!("http://a:1#jwt-secret={el}")]).expect("valid");
        let rules = &c.added_secrets;
        let beside = std::path::Path::new(&el).with_file_name("new.hex");
        std::fs::write(&beside, "33".repeat(32)).expect("write");
        let elsewhere = temp("other.hex", &"44".repeat(32));
        let node =
            |options: String| NodeConfig::parse(&format!("http://b:2{options}"), &c.node_defaults);
        let ok = node(format!("#jwt-secret={}", beside.display())).expect("parses");
        assert_eq!(rules.check_source(&ok), Ok(()));
        let other = std::path::Path::new(&elsewhere);
        let dotted = format!(
            "#jwt-secret={}/../{}/other.hex",
            beside.parent().expect("dir").display(),
            other
                .parent()
                .and_then(|d| d.file_name())
                .expect("dir")
                .to_string_lossy()
        );
        for escape in [format!("#jwt-secret={elsewhere}"), dotted] {
            let out = node(escape).expect("parses");
            let refused = rules.check_source(&out).expect_err("outside");
            assert!(
                refused.contains("outside the secret directories"),
                "{refused}"
            );
        }
        let none = node(String::new()).expect("parses");
        let refused = rules.check_source(&none).expect_err("the CL's secret");
        assert!(refused.contains("names its own #jwt-secret"), "{refused}");
        let open = config(&["--nodes", "http://a:1", "--allow-shared-secrets"]).expect("valid");
        assert_eq!(open.added_secrets.check_source(&none), Ok(()));
    }

    #[test]
    fn urls_are_redacted() {
        let url = Url::parse("http://user:pw@10.0.0.1:8551/path?key=abc").expect("url");
        assert_eq!(redact(&url), "http://***@10.0.0.1:8551/path");
        let plain = Url::parse("http://127.0.0.1:8551").expect("url");
        assert_eq!(redact(&plain), "http://127.0.0.1:8551/");
    }

    #[test]
    fn admin_token_compares_exactly() {
        let token = AdminToken(Zeroizing::new("0123456789abcdef".into()));
        assert!(token.accepts(Some("Bearer 0123456789abcdef")));
        assert!(!token.accepts(Some("Bearer 0123456789abcdeF")));
        assert!(!token.accepts(Some("Bearer 0123456789abcde")));
        assert!(!token.accepts(None));
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }
}
