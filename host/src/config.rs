//! Raw command-line values → a validated [`Config`]. Nothing here binds a port or starts a task,
//! so tests build configs freely. Every error names the flag it is about.

use crate::auth::{JwtSecret, SecretError};
use crate::cli::{GetPayloadMode, RunArgs};
use crate::policy::PolicySource;
use crate::queue::Limits;
use crate::route::MAX_EL_TIMEOUT;
use crate::straggler::Straggler;
use policy_sdk::abi::MAX_VOTES;
use policy_sdk::ClientCode;
use reqwest::{Certificate, Url};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

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
    /// Token for mutating admin calls.
    pub admin_token: Option<AdminToken>,
    /// The policy module.
    pub policy: PolicySource,
    /// The policy's config string (with `--fcu-majority` folded in).
    pub policy_config: String,
    /// Largest CL request body, in bytes.
    pub max_body: usize,
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
}

/// One EL.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its Engine API URL.
    pub url: Url,
    /// Its JWT secret.
    pub secret: JwtSecret,
    /// Its timeout (capped per call below the CL's deadline).
    pub timeout: Duration,
    /// Observed and voting, never counted by the default rule, never primary.
    pub do_not_use: bool,
    /// How long a verdict waits for it once the others decide (`#straggler=`).
    pub straggler: Straggler,
    /// Its call queue's bounds.
    pub queue: Limits,
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
            timeout: defaults.timeout,
            do_not_use: false,
            straggler: defaults.straggler,
            queue: defaults.queue,
            ca: None,
            client: None,
        };
        for option in parts {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "jwt-secret" => {
                    node.secret = JwtSecret::read(Path::new(value)).map_err(|e| e.to_string())?;
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
        let node_defaults = NodeDefaults {
            secret: cl_secret.clone(),
            timeout: default_timeout,
            straggler,
            queue: Limits {
                bytes: args.queue_mib << 20,
                ..Limits::default()
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
        let admin_token = match &args.admin_token {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    error(
                        "admin-token",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let token = text.trim();
                if token.len() < 16 {
                    return Err(error(
                        "admin-token",
                        "the token must be at least 16 characters",
                    ));
                }
                Some(AdminToken(Zeroizing::new(token.to_owned())))
            }
        };
        if !args.admin_addr.ip().is_loopback() && admin_token.is_none() {
            return Err(error(
                "admin-addr",
                format!(
                    "{} is not a loopback address: set --admin-token too",
                    args.admin_addr
                ),
            ));
        }
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
        if args.health_interval == 0 || args.health_interval > 3600 {
            return Err(error(
                "health-interval",
                "must be between 1 and 3600 seconds",
            ));
        }
        Ok(Config {
            nodes,
            node_defaults,
            cl_secret,
            listen: SocketAddr::new(args.listen_addr, args.port),
            admin: args.admin_addr,
            admin_token,
            policy: args
                .policy
                .clone()
                .map_or(PolicySource::Embedded, PolicySource::File),
            policy_config,
            max_body: args.max_body_mib << 20,
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
        let cases: [(&[&str], &str); 11] = [
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
                &[n[0], n[1], "--admin-addr", "0.0.0.0:7001"],
                "--admin-addr: 0.0.0.0:7001 is not a loopback",
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
