//! A real devnet on loopback: Lodestar (CL) → eb → three EthereumJS ELs, the third behind a
//! fault-injecting stand-in; or, for client diversity, the third a geth. [`Devnet::start`]
//! brings it up; the scenarios in [`scenarios`] and [`diverse`] drive and check it; dropping it
//! stops every process it started.
//!
//! The clients come from npm (`tests/devnet/{lodestar,ethereumjs}`, installed by
//! `scripts/devnet.sh`), geth from the Go module proxy; eb is a release build.

pub mod diverse;
pub mod observe;
pub mod process;
pub mod replicas;
pub mod scenarios;
pub mod standin;

use crate::etcd::EtcdCluster;
use eb::auth::{JwtSecret, Minter};
use observe::{Admin, Beacon, Rpc};
use process::{free_ports, Service};
use serde_json::{json, Value};
use standin::StandIn;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Execution clients behind eb.
pub const ELS: usize = 3;
/// The EL behind the fault-injecting stand-in.
pub const LIAR: usize = 2;
/// Seconds per slot (Lodestar `--params.SECONDS_PER_SLOT`).
pub const SLOT: Duration = Duration::from_secs(2);
/// Slots per epoch of the minimal preset `lodestar dev` runs.
pub const SLOTS_PER_EPOCH: u64 = 8;
/// The chain id of `tests/devnet/genesis.json`.
pub const CHAIN_ID: u64 = 1337;

/// Where things are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The npm installs: `<clients>/lodestar/node_modules`, `<clients>/ethereumjs/node_modules`.
    pub clients: PathBuf,
    /// The eb binary under test.
    pub eb: PathBuf,
    /// A fresh folder for data, secrets, logs and the vote recording.
    pub work: PathBuf,
    /// The transaction signer (`tests/devnet/txgen`).
    pub txgen: PathBuf,
    /// A geth binary: EL [`LIAR`] runs it instead of EthereumJS.
    pub geth: Option<PathBuf>,
    /// The policy eb runs (`--policy`; the embedded default when `None`), also for the replay.
    pub policy: Option<PathBuf>,
}

impl Paths {
    fn lodestar(&self) -> PathBuf {
        self.clients.join("lodestar/node_modules/.bin/lodestar")
    }

    fn ethereumjs(&self) -> PathBuf {
        self.clients.join("ethereumjs/node_modules/.bin/ethereumjs")
    }

    /// eb's vote recording.
    pub fn votes(&self) -> PathBuf {
        self.work.join("votes.jsonl")
    }

    fn secret(&self, who: &str) -> PathBuf {
        self.work.join(format!("{who}.hex"))
    }

    /// The last lines of every log, for a failure report.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let names = [
            "lodestar.log",
            "lodestar-2.log",
            "eb.log",
            "eb.restart.log",
            "eb-b.log",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain((0..ELS).flat_map(|i| [format!("el{i}.log"), format!("el{i}.restart.log")]));
        for name in names {
            let path = self.work.join(&name);
            if !path.exists() {
                continue;
            }
            out.push_str(&format!(
                "--- {} (last 15 lines)\n{}\n",
                path.display(),
                process::tail(&path, 15)
            ));
        }
        out
    }
}

/// One EL (EthereumJS, or geth).
pub struct El {
    /// 0, 1 or 2: also its node index in eb.
    pub index: usize,
    rpc_port: u16,
    engine_port: u16,
    p2p_port: u16,
    /// Its (unauthenticated) JSON-RPC endpoint.
    pub rpc: Rpc,
    /// Its rlpx address, once known.
    pub enode: String,
    service: Option<Service>,
}

impl El {
    /// Its engine URL.
    pub fn engine_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.engine_port)
    }
}

/// The running devnet.
pub struct Devnet {
    /// Where things are.
    pub paths: Paths,
    /// The execution clients.
    pub els: Vec<El>,
    /// The stand-in in front of EL [`LIAR`].
    pub standin: StandIn,
    /// eb's admin API.
    pub admin: Admin,
    /// eb's engine port, with a CL token (for transactions).
    pub engine: Rpc,
    /// Lodestar's REST API.
    pub beacon: Beacon,
    eb: Option<Service>,
    eb_args: Vec<String>,
    cl: Option<Service>,
    /// The second eb replica and the etcd they share (`Devnet::start_replicated`).
    pub replica: Option<Replica>,
    /// Every URL of the devnet, by name (for `--hold` and reports).
    pub endpoints: Value,
}

/// The second eb replica (`b`) of a replicated devnet, the CL's fallback URL, with the 3-member
/// etcd both replicas share; with two CLs, the second beacon node, which `b` serves alone.
pub struct Replica {
    /// Its admin API.
    pub admin: Admin,
    /// Its vote recording.
    pub votes: PathBuf,
    service: Option<Service>,
    /// The etcd members (stopped when the devnet is dropped).
    pub etcd: EtcdCluster,
    /// The second beacon node's REST API (two CLs).
    pub second_beacon: Option<Beacon>,
    second_cl: Option<Service>,
}

/// Which eb processes and CLs a devnet runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One eb, one CL.
    Single,
    /// Replicas `a` and `b` (sharing a 3-member etcd), both the CL's `--execution.urls`.
    Replicas,
    /// [`Topology::Replicas`], and a second beacon node (no validators, peered with the first)
    /// served by `b` alone.
    TwoCls,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Polls `probe` every 250 ms until it gives `Some`, or fails after `limit` naming `what`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return Ok(found);
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn write_secret(path: &Path) -> Result<JwtSecret, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let text = hex::encode(bytes);
    std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    JwtSecret::from_hex(&text).ok_or_else(|| "secret: not 32 bytes of hex".to_owned())
}

impl Devnet {
    /// Starts the ELs, the stand-in, eb (with `eb_extra` arguments after the devnet's own) and
    /// Lodestar, and waits until eb sees every EL.
    pub async fn start(paths: Paths, eb_extra: &[String]) -> Result<Devnet, String> {
        Devnet::start_as(paths, eb_extra, Topology::Single).await
    }

    /// [`Devnet::start`] in `topology`: with replicas, `a` and `b` share a 3-member etcd on
    /// loopback in front of the same ELs, and Lodestar's `--execution.urls` names both, `a`
    /// first.
    pub async fn start_as(
        paths: Paths,
        eb_extra: &[String],
        topology: Topology,
    ) -> Result<Devnet, String> {
        std::fs::create_dir_all(&paths.work)
            .map_err(|e| format!("{}: {e}", paths.work.display()))?;
        let genesis = crate::workspace().join("tests/devnet/genesis.json");
        std::fs::copy(&genesis, paths.work.join("genesis.json"))
            .map_err(|e| format!("{}: {e}", genesis.display()))?;
        let cl_secret = write_secret(&paths.secret("cl"))?;
        // Before the devnet's ports are picked: etcd picks its own.
        let etcd = match topology {
            Topology::Single => None,
            Topology::Replicas | Topology::TwoCls => Some(EtcdCluster::start(3).await),
        };
        // Every port at once, so no two are the same: 3 per EL, then eb, its admin API,
        // Lodestar's REST API and p2p port, a second replica's engine and admin APIs, and a
        // second beacon node's REST API and p2p port.
        let ports: [u16; 3 * ELS + 8] = free_ports()?;
        let mut els = Vec::new();
        for (index, el_ports) in ports.chunks_exact(3).take(ELS).enumerate() {
            write_secret(&paths.secret(&format!("el{index}")))?;
            let [rpc_port, engine_port, p2p_port] = [el_ports[0], el_ports[1], el_ports[2]];
            els.push(El {
                index,
                rpc_port,
                engine_port,
                p2p_port,
                rpc: Rpc::new(&format!("http://127.0.0.1:{rpc_port}"), None),
                enode: String::new(),
                service: None,
            });
        }
        // EL 0 first: its enode is the others' bootnode, its genesis hash the CL's.
        start_el(&paths, &mut els[0], &[])?;
        let genesis_hash = wait_el(&mut els[0]).await?;
        let boot = [els[0].enode.clone()];
        for el in &mut els[1..] {
            start_el(&paths, el, &boot)?;
        }
        for el in &mut els[1..] {
            wait_el(el).await?;
        }

        let standin = StandIn::start(&els[LIAR].engine_url())
            .await
            .map_err(|e| format!("stand-in: {e}"))?;
        let [eb_port, admin_port, rest_port, cl_p2p_port] = [
            ports[3 * ELS],
            ports[3 * ELS + 1],
            ports[3 * ELS + 2],
            ports[3 * ELS + 3],
        ];
        let specs: Vec<String> = els
            .iter()
            .map(|el| {
                let url = if el.index == LIAR {
                    standin.url.clone()
                } else {
                    el.engine_url()
                };
                // EthereumJS 0.10.5 has no engine_getClientVersionV1: its code is declared.
                let client = if paths.geth.is_some() && el.index == LIAR {
                    ""
                } else {
                    "#client=EJ"
                };
                format!(
                    "{url}#jwt-secret={}{client}",
                    paths.secret(&format!("el{}", el.index)).display()
                )
            })
            .collect();
        let mut eb_args = vec![
            "--jwt-secret".to_owned(),
            paths.secret("cl").display().to_string(),
            "--nodes".to_owned(),
            specs.join(","),
            "--listen-addr".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            eb_port.to_string(),
            "--admin-addr".to_owned(),
            format!("127.0.0.1:{admin_port}"),
            "--admin-token".to_owned(),
            paths.work.join("admin-token").display().to_string(),
            "--record-votes".to_owned(),
            paths.votes().display().to_string(),
        ];
        if let Some(policy) = &paths.policy {
            eb_args.extend(["--policy".to_owned(), policy.display().to_string()]);
        }
        eb_args.extend_from_slice(eb_extra);
        let mut execution_urls = vec![format!("--execution.urls=http://127.0.0.1:{eb_port}")];
        let mut replica = match etcd {
            None => None,
            Some(etcd) => {
                let cluster = [
                    "--etcd".to_owned(),
                    etcd.endpoints().join(","),
                    "--cluster".to_owned(),
                    "devnet".to_owned(),
                ];
                let (b_port, b_admin) = (ports[3 * ELS + 4], ports[3 * ELS + 5]);
                let mut b_args = eb_args.clone();
                let votes = paths.work.join("votes-b.jsonl");
                for (flag, value) in [
                    ("--port", b_port.to_string()),
                    ("--admin-addr", format!("127.0.0.1:{b_admin}")),
                    (
                        "--admin-token",
                        paths.work.join("admin-token-b").display().to_string(),
                    ),
                    ("--record-votes", votes.display().to_string()),
                ] {
                    if let Some(i) = b_args.iter().position(|a| a == flag) {
                        b_args[i + 1] = value;
                    }
                }
                b_args.extend(cluster.iter().cloned());
                b_args.extend(["--replica".to_owned(), "b".to_owned()]);
                eb_args.extend(cluster);
                eb_args.extend(["--replica".to_owned(), "a".to_owned()]);
                let log = paths.work.join("eb-b.log");
                let service = Service::start("eb-b", &paths.eb, &b_args, &paths.work, &log)?;
                // Lodestar tries them in order on every request.
                execution_urls.push(format!("--execution.urls=http://127.0.0.1:{b_port}"));
                let admin = Admin::new(
                    &format!("http://127.0.0.1:{b_admin}"),
                    &paths.work.join("admin-token-b"),
                );
                Some(Replica {
                    admin,
                    votes,
                    service: Some(service),
                    etcd,
                    second_beacon: None,
                    second_cl: None,
                })
            }
        };
        let eb = Service::start(
            "eb",
            &paths.eb,
            &eb_args,
            &paths.work,
            &paths.work.join("eb.log"),
        )?;
        let admin = Admin::new(
            &format!("http://127.0.0.1:{admin_port}"),
            &paths.work.join("admin-token"),
        );
        until(
            "eb to reach all three ELs",
            Duration::from_secs(60),
            || async {
                // Synced, or (before any block) syncing: an EL on its genesis waiting for the CL
                // may say either.
                let status = admin.status().await.ok()?;
                (0..ELS)
                    .all(|i| {
                        matches!(
                            observe::node_state(&status, i).0.as_str(),
                            "synced" | "syncing"
                        )
                    })
                    .then_some(())
            },
        )
        .await?;

        let genesis = SystemTime::now() + Duration::from_secs(10);
        let genesis_secs = genesis
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rest = format!("http://127.0.0.1:{rest_port}");
        let chain_args = [
            "dev",
            "--genesisValidators=8",
            &format!("--genesisTime={genesis_secs}"),
            &format!("--genesisEth1Hash={genesis_hash}"),
            "--params.ALTAIR_FORK_EPOCH=0",
            "--params.BELLATRIX_FORK_EPOCH=0",
            "--params.CAPELLA_FORK_EPOCH=0",
            "--params.TERMINAL_TOTAL_DIFFICULTY=0",
            &format!("--params.SECONDS_PER_SLOT={}", SLOT.as_secs()),
            &format!("--jwt-secret={}", paths.secret("cl").display()),
            "--listenAddress=127.0.0.1",
            "--rest.address=127.0.0.1",
        ]
        .map(str::to_owned);
        let mut cl_args: Vec<String> = chain_args.to_vec();
        cl_args.extend([
            "--startValidators=0..7".to_owned(),
            format!("--port={cl_p2p_port}"),
            format!("--rest.port={rest_port}"),
            format!("--server={rest}"),
            format!("--dataDir={}", paths.work.join("cl").display()),
        ]);
        if topology == Topology::TwoCls {
            // Found by the second beacon node through discv5, on loopback.
            cl_args.extend(
                ["--discv5=true", "--enr.ip=127.0.0.1"]
                    .map(str::to_owned)
                    .into_iter()
                    .chain([
                        format!("--enr.tcp={cl_p2p_port}"),
                        format!("--enr.udp={cl_p2p_port}"),
                    ]),
            );
        } else {
            cl_args.push("--discv5=false".to_owned());
        }
        cl_args.extend(execution_urls);
        let cl = Service::start(
            "lodestar",
            &paths.lodestar(),
            &cl_args,
            &paths.work,
            &paths.work.join("lodestar.log"),
        )?;
        if let (Topology::TwoCls, Some(replica)) = (topology, replica.as_mut()) {
            let beacon = Beacon::new(&rest);
            let enr = until(
                "the first beacon node's ENR",
                Duration::from_secs(60),
                || async { beacon.enr().await.ok() },
            )
            .await?;
            let (rest2, p2p2) = (ports[3 * ELS + 6], ports[3 * ELS + 7]);
            let b_port = ports[3 * ELS + 4];
            let mut args = chain_args.to_vec();
            args.extend([
                format!("--port={p2p2}"),
                format!("--rest.port={rest2}"),
                format!("--dataDir={}", paths.work.join("cl2").display()),
                "--discv5=true".to_owned(),
                format!("--bootnodes={enr}"),
                "--network.connectToDiscv5Bootnodes=true".to_owned(),
                format!("--execution.urls=http://127.0.0.1:{b_port}"),
            ]);
            let log = paths.work.join("lodestar-2.log");
            replica.second_cl = Some(Service::start(
                "lodestar-2",
                &paths.lodestar(),
                &args,
                &paths.work,
                &log,
            )?);
            replica.second_beacon = Some(Beacon::new(&format!("http://127.0.0.1:{rest2}")));
        }
        let engine = Rpc::new(
            &format!("http://127.0.0.1:{eb_port}"),
            Some(Minter::new(&cl_secret)),
        );
        let endpoints = json!({
            "eb_engine": format!("http://127.0.0.1:{eb_port}"),
            "eb_admin": format!("http://127.0.0.1:{admin_port}"),
            "beacon_rest": rest,
            "el_rpc": els.iter().map(|el| format!("http://127.0.0.1:{}", el.rpc_port)).collect::<Vec<_>>(),
            "el_engine": els.iter().map(El::engine_url).collect::<Vec<_>>(),
            "stand_in": standin.url,
        });
        Ok(Devnet {
            endpoints,
            els,
            standin,
            admin,
            engine,
            beacon: Beacon::new(&rest),
            eb: Some(eb),
            eb_args,
            cl: Some(cl),
            replica,
            paths,
        })
    }

    /// SIGKILLs eb (replica `a` of a replicated devnet).
    pub fn kill_eb(&mut self) {
        if let Some(eb) = self.eb.take() {
            eb.kill();
        }
    }

    /// Starts eb again with its first arguments (logging to `eb.restart.log`).
    pub fn restart_eb(&mut self) -> Result<(), String> {
        let log = self.paths.work.join("eb.restart.log");
        let eb = Service::start("eb", &self.paths.eb, &self.eb_args, &self.paths.work, &log)?;
        self.eb = Some(eb);
        Ok(())
    }

    /// Kills EL `index` (SIGKILL: a crash, not a shutdown).
    pub fn kill_el(&mut self, index: usize) {
        if let Some(service) = self.els[index].service.take() {
            service.kill();
        }
    }

    /// Freezes EL `index` (SIGSTOP) or, with `frozen` false, lets it run again (SIGCONT).
    pub fn freeze_el(&self, index: usize, frozen: bool) {
        if let Some(service) = &self.els[index].service {
            service.freeze(frozen);
        }
    }

    /// The first started process (not stopped on purpose) that has exited, and how.
    pub fn exited(&self) -> Option<String> {
        let replica = self.replica.as_ref();
        let services = [&self.cl, &self.eb]
            .into_iter()
            .chain(replica.map(|r| &r.service))
            .chain(replica.map(|r| &r.second_cl))
            .chain(self.els.iter().map(|el| &el.service));
        services.flatten().find_map(|service| {
            let status = service.exited()?;
            Some(format!(
                "{} exited ({status}); see {}",
                service.name(),
                service.log().display()
            ))
        })
    }

    /// [`until`], failing at once when one of the devnet's processes has exited.
    pub async fn until<T, F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: F,
    ) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let found = until(what, limit, || {
            let stop = self.exited().is_some();
            let probe = probe();
            async move {
                if stop {
                    // Ends the wait; the reason is reported below.
                    return Some(None);
                }
                probe.await.map(Some)
            }
        })
        .await?;
        found.ok_or_else(|| {
            let exited = self.exited().unwrap_or_default();
            format!("{exited} while waiting for {what}")
        })
    }

    /// Restarts EL `index` on its data and ports, peered with the other ELs.
    pub async fn restart_el(&mut self, index: usize) -> Result<(), String> {
        let peers: Vec<String> = self
            .els
            .iter()
            .filter(|el| el.index != index)
            .map(|el| el.enode.clone())
            .collect();
        start_el(&self.paths, &mut self.els[index], &peers)?;
        wait_el(&mut self.els[index]).await.map(drop)
    }

    /// Signed transfers from the prefunded account (`tests/devnet/txgen`): (raw, hash).
    pub fn sign_transactions(&self, count: usize) -> Result<Vec<(String, String)>, String> {
        let plan = crate::chain::txs::Plan {
            transfers: count,
            withdrawals: 0,
            blob_txs: 0,
            sidecar_version: 1,
        };
        let txs = crate::chain::txs::sign(&self.paths.txgen, CHAIN_ID, &plan)?;
        Ok(txs.into_iter().map(|tx| (tx.raw, tx.hash)).collect())
    }

    /// Stops Lodestar, then eb (which flushes its recording), then the ELs.
    pub fn stop(&mut self) {
        if let Some(cl) = self.cl.take() {
            cl.stop(Duration::from_secs(10));
        }
        if let Some(eb) = self.eb.take() {
            // SIGTERM: eb drains and closes the recording.
            eb.stop(Duration::from_secs(15));
        }
        if let Some(replica) = self.replica.as_mut() {
            if let Some(cl) = replica.second_cl.take() {
                cl.stop(Duration::from_secs(10));
            }
            if let Some(b) = replica.service.take() {
                b.stop(Duration::from_secs(15));
            }
        }
        for el in &mut self.els {
            if let Some(service) = el.service.take() {
                service.stop(Duration::from_secs(2));
            }
        }
    }

    /// Waits until the three ELs' latest blocks and the CL's head agree; returns each EL's
    /// `(number, hash)` as read in that agreeing poll.
    pub async fn same_head(&self, limit: Duration) -> Result<Vec<(u64, String)>, String> {
        self.until("the three ELs and the CL on one head", limit, || async {
            let cl = self.beacon.head_execution_hash().await.ok()?;
            let mut heads = Vec::with_capacity(self.els.len());
            for el in &self.els {
                heads.push(el.rpc.block("latest").await.ok()?);
            }
            heads
                .iter()
                .all(|h| *h == heads[0] && h.1 == cl)
                .then_some(heads)
        })
        .await
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // Services kill their process groups when dropped; this only orders it.
        self.cl.take();
        self.eb.take();
        if let Some(replica) = &mut self.replica {
            replica.second_cl.take();
            replica.service.take();
        }
        for el in &mut self.els {
            el.service.take();
        }
    }
}

fn start_el(paths: &Paths, el: &mut El, bootnodes: &[String]) -> Result<(), String> {
    if let (Some(geth), LIAR) = (&paths.geth, el.index) {
        return start_geth(paths, geth, el);
    }
    let mut args: Vec<String> = [
        format!(
            "--gethGenesis={}",
            paths.work.join("genesis.json").display()
        ),
        format!(
            "--dataDir={}",
            paths.work.join(format!("el{}", el.index)).display()
        ),
        "--rpc".to_owned(),
        "--rpcAddr=127.0.0.1".to_owned(),
        format!("--rpcPort={}", el.rpc_port),
        "--rpcEngine".to_owned(),
        "--rpcEngineAddr=127.0.0.1".to_owned(),
        format!("--rpcEnginePort={}", el.engine_port),
        format!(
            "--jwtSecret={}",
            paths.secret(&format!("el{}", el.index)).display()
        ),
        "--discDns=false".to_owned(),
        "--discV4=false".to_owned(),
        format!("--port={}", el.p2p_port),
        "--extIP=127.0.0.1".to_owned(),
        "--isSingleNode".to_owned(),
        // Its own log file (in the data folder) only for errors; the rest goes to el<i>.log.
        "--logLevelFile=error".to_owned(),
    ]
    .to_vec();
    if !bootnodes.is_empty() {
        args.push(format!("--bootnodes={}", bootnodes.join(",")));
    }
    let log = paths.work.join(format!("el{}.log", el.index));
    // A restart logs to el<i>.restart.log (the first run's lines stay readable).
    let log = if log.exists() {
        paths.work.join(format!("el{}.restart.log", el.index))
    } else {
        log
    };
    el.service = Some(Service::start(
        &format!("el{}", el.index),
        &paths.ethereumjs(),
        &args,
        &paths.work,
        &log,
    )?);
    Ok(())
}

/// Starts geth as EL `el` on the devnet's genesis (initialized on the first start). It is not
/// peered: eb gives it every block and transaction, and no scenario restarts it.
fn start_geth(paths: &Paths, geth: &Path, el: &mut El) -> Result<(), String> {
    let data = paths.work.join(format!("el{}", el.index));
    if !data.exists() {
        let init = std::process::Command::new(geth)
            .arg("--datadir")
            .arg(&data)
            .args(["--state.scheme", "hash", "init"])
            .arg(paths.work.join("genesis.json"))
            .output()
            .map_err(|e| format!("{}: {e}", geth.display()))?;
        if !init.status.success() {
            return Err(format!(
                "geth init: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
    }
    let args: Vec<String> = vec![
        format!("--datadir={}", data.display()),
        "--authrpc.addr=127.0.0.1".to_owned(),
        format!("--authrpc.port={}", el.engine_port),
        format!(
            "--authrpc.jwtsecret={}",
            paths.secret(&format!("el{}", el.index)).display()
        ),
        "--http".to_owned(),
        "--http.addr=127.0.0.1".to_owned(),
        format!("--http.port={}", el.rpc_port),
        "--http.api=eth,net,web3,admin".to_owned(),
        "--nodiscover".to_owned(),
        format!("--port={}", el.p2p_port),
        "--nat=none".to_owned(),
        "--ipcdisable".to_owned(),
        "--syncmode=full".to_owned(),
        "--cache=64".to_owned(),
        "--state.scheme=hash".to_owned(),
        "--gcmode=archive".to_owned(),
    ];
    el.service = Some(Service::start(
        &format!("el{} (geth)", el.index),
        geth,
        &args,
        &paths.work,
        &paths.work.join(format!("el{}.log", el.index)),
    )?);
    Ok(())
}

/// Waits for an EL's JSON-RPC; records its enode; returns its genesis hash.
async fn wait_el(el: &mut El) -> Result<String, String> {
    let rpc = &el.rpc;
    let info: Value = until(
        &format!("EL {} to answer JSON-RPC", el.index),
        Duration::from_secs(90),
        || async { rpc.call("admin_nodeInfo", json!([])).await.ok() },
    )
    .await?;
    el.enode = info["enode"]
        .as_str()
        .unwrap_or_default()
        .replace("@0.0.0.0:", "@127.0.0.1:");
    info["protocols"]["eth"]["genesis"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("EL {}: no genesis in admin_nodeInfo: {info}", el.index))
}
