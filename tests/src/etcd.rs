//! A real etcd cluster on loopback (Debian's `etcd-server`, installed by `scripts/test.sh`):
//! members started with their data in a temp dir, killed and restarted by the tests. Health is
//! asked over HTTP with the test's own client, never through eb's store code.

use crate::devnet::process::{free_port_list, tail, Service};
use std::path::PathBuf;
use std::time::Duration;

/// One member: its name, its client and peer ports, and its process while it runs.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    service: Option<Service>,
}

/// An etcd cluster of loopback members.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    initial: String,
}

/// The `etcd` binary (`EB_ETCD_BIN`, else `etcd` on the PATH).
fn binary() -> PathBuf {
    std::env::var_os("EB_ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers `/health` with a leader.
    pub async fn start(n: usize) -> EtcdCluster {
        let ports = free_port_list(2 * n).expect("free ports");
        let dir = std::env::temp_dir().join(format!("eb-etcd-{}-{}", std::process::id(), ports[0]));
        std::fs::create_dir_all(&dir).expect("etcd dir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: ports[2 * i],
                peer: ports[2 * i + 1],
                service: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            dir,
            initial,
        };
        for i in 0..n {
            cluster.launch(i);
        }
        cluster.wait_healthy(0..n).await;
        cluster
    }

    fn launch(&mut self, i: usize) {
        let member = &self.members[i];
        let data = self.dir.join(&member.name);
        let client = format!("http://127.0.0.1:{}", member.client);
        let peer = format!("http://127.0.0.1:{}", member.peer);
        let args: Vec<String> = [
            "--name",
            &member.name,
            "--data-dir",
            &data.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &self.initial,
            "--initial-cluster-token",
            "eb-test",
            "--initial-cluster-state",
            "new",
            // Loopback: elections in a fraction of a second.
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let log = self.dir.join(format!("{}.log", member.name));
        let service = Service::start(&member.name, &binary(), &args, &self.dir, &log)
            .unwrap_or_else(|e| {
                panic!("{e}: the cluster tests need etcd (Debian's etcd-server; scripts/test.sh installs it)")
            });
        self.members[i].service = Some(service);
    }

    /// The client URLs, for `--etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// The value at `key`, read from etcd's gateway by the test itself (not through eb).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        for endpoint in self.endpoints() {
            let body = serde_json::json!({ "key": b64.encode(key) }).to_string();
            let sent = crate::client()
                .post(format!("{endpoint}/v3/kv/range"))
                .body(body)
                .send()
                .await;
            let Ok(text) = (match sent {
                Ok(response) => response.text().await,
                Err(_) => continue,
            }) else {
                continue;
            };
            let answer: serde_json::Value = serde_json::from_str(&text).expect("etcd json");
            let value = answer["kvs"][0]["value"].as_str()?;
            return Some(b64.decode(value).expect("base64"));
        }
        None
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(service) = self.members[i].service.take() {
            service.kill();
        }
    }

    /// Starts member `i` again on its data and waits until the cluster is healthy.
    pub async fn restart(&mut self, i: usize) {
        self.launch(i);
        self.wait_healthy(0..self.members.len()).await;
    }

    /// Waits until each member in `which` that runs answers `/health` true (it has a leader
    /// and a quorum).
    async fn wait_healthy(&self, which: std::ops::Range<usize>) {
        let client = crate::client();
        for i in which {
            let member = &self.members[i];
            if member.service.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/health", member.client);
            let mut last;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match client.get(&url).send().await {
                    Ok(answer) => {
                        last = answer.text().await.unwrap_or_default();
                        if last.contains(r#""health":"true""#) {
                            break;
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
                if tokio::time::Instant::now() > deadline {
                    let log = self.dir.join(format!("{}.log", member.name));
                    panic!(
                        "etcd {} not healthy in 30 s ({last}):\n{}",
                        member.name,
                        tail(&log, 20)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.service.take();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
