//! Fork readiness: each EL's `engine_exchangeCapabilities` answer compared with the methods the
//! CL lists. Before a fork the CL lists the fork's new methods; an EL that was not upgraded lacks
//! them and would fail at the fork epoch. eb names such an EL (warn log, `/status`,
//! `eb_el_missing_capabilities`) whenever the CL exchanges capabilities, and again each time the
//! EL comes back from a restart.

use crate::nodes::{Node, Nodes};
use crate::upstream::Reply;
use bytes::Bytes;
use std::time::Duration;

/// How long the check after a restart may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(serde::Deserialize)]
struct Request {
    params: (Vec<String>,),
}

#[derive(serde::Deserialize)]
struct Answer {
    result: Vec<String>,
}

/// The methods the CL lists in an `engine_exchangeCapabilities` request body.
pub fn asked(body: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice::<Request>(body)
        .ok()
        .map(|r| r.params.0)
}

/// The methods the CL `asked` for that the EL's `offered` list lacks, in the CL's order.
pub fn missing(asked: &[String], offered: &[String]) -> Vec<String> {
    asked
        .iter()
        .filter(|m| m.as_str() != "engine_exchangeCapabilities" && !offered.contains(m))
        .cloned()
        .collect()
}

/// Compares one EL's answer with the CL's list and records the result on the node.
pub fn compare(node: &Node, asked: &[String], offered: &[String]) {
    node.set_missing_capabilities(missing(asked, offered));
}

/// After `node` came back: asks it the CL's last `engine_exchangeCapabilities` (if the CL has
/// sent one) and compares.
pub async fn recheck(nodes: &Nodes, node: &Node) {
    let Some(body) = nodes.asked_capabilities() else {
        return;
    };
    let Some(asked) = asked(&body) else { return };
    let timed = node.call(Bytes::clone(&body), CHECK_TIMEOUT).await;
    if let Reply::Body(answer) = timed.reply {
        if let Ok(answer) = serde_json::from_slice::<Answer>(&answer) {
            compare(node, &asked, &answer.result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_methods_an_el_lacks_in_the_cls_order() {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"engine_exchangeCapabilities","params":[["engine_newPayloadV4","engine_getPayloadV5","engine_exchangeCapabilities","engine_getBlobsV2"]]}"#;
        let cl = asked(body).expect("a list");
        assert_eq!(cl.len(), 4);
        let el = list(&["engine_newPayloadV4", "engine_getPayloadV4"]);
        assert_eq!(
            missing(&cl, &el),
            list(&["engine_getPayloadV5", "engine_getBlobsV2"])
        );
        assert!(missing(&cl, &cl).is_empty());
        assert_eq!(asked(b"{\"params\":[]}"), None);
    }
}
