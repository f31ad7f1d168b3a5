//! Calls every EL answers for itself, merged into one answer: `engine_exchangeCapabilities`
//! (the methods every answering EL supports), `engine_getClientVersionV1` (every EL's entries
//! in one flat array, as `identification.md` asks of multiplexers) and `engine_getBlobsV*` (the
//! blobs any EL's pool holds). ELs that have not answered shortly after the first one are left
//! out.

use crate::error::{Answer, EngineError};
use crate::health::record_client;
use crate::hedge;
use crate::nodes::{Node, Nodes};
use crate::primary;
use crate::readiness;
use crate::rpc::Call;
use crate::upstream::{Reply, Timed};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use tokio::time::Instant;

/// Sends `call` to every EL at once; waits for all within the call's budget, but once one has
/// answered, at most [`hedge::MAX`] more: a hung EL does not hold the merged answer.
async fn ask_all(nodes: &Nodes, call: &Call<'_>) -> Vec<(Arc<Node>, Timed)> {
    let budget = crate::route::budget(&call.method);
    let mut asked: FuturesUnordered<_> = nodes
        .snapshot()
        .iter()
        .map(|node| {
            let (node, body) = (Arc::clone(node), call.bytes.clone());
            async move {
                let timed = node.call(body, budget).await;
                node.observe(&timed);
                (node, timed)
            }
        })
        .collect();
    let mut replies = Vec::with_capacity(asked.len());
    let mut cutoff = Instant::now() + budget;
    loop {
        tokio::select! {
            next = asked.next() => match next {
                Some(reply) => {
                    if matches!(reply.1.reply, Reply::Body(_)) {
                        cutoff = cutoff.min(Instant::now() + hedge::MAX);
                    }
                    replies.push(reply);
                }
                None => break,
            },
            () = tokio::time::sleep_until(cutoff) => break,
        }
    }
    replies
}

/// The `result` of each reply that has one, as `T`.
fn results<T: serde::de::DeserializeOwned>(replies: &[(Arc<Node>, Timed)]) -> Vec<(&Arc<Node>, T)> {
    #[derive(serde::Deserialize)]
    struct Answer<T> {
        result: T,
    }
    replies
        .iter()
        .filter_map(|(node, timed)| match &timed.reply {
            Reply::Body(body) => serde_json::from_slice::<Answer<T>>(body)
                .ok()
                .map(|a| (node, a.result)),
            _ => None,
        })
        .collect()
}

fn nobody() -> Answer {
    Err(EngineError::NoAnswer("no execution client answered".into()))
}

/// `value` as a result's JSON text.
fn json(value: &impl serde::Serialize) -> Answer {
    Ok(Bytes::from(
        serde_json::to_vec(value).unwrap_or_else(|_| b"[]".to_vec()),
    ))
}

/// `engine_exchangeCapabilities`: the intersection of the answering ELs' lists, in the first
/// list's order, never listing `engine_exchangeCapabilities` itself. Each EL's list is also
/// checked against the CL's ([`readiness`]).
pub async fn capabilities(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let replies = ask_all(nodes, call).await;
    let lists = results::<Vec<String>>(&replies);
    if let Some(asked) = readiness::asked(&call.bytes) {
        nodes.set_asked_capabilities(call.bytes.clone());
        for (node, offered) in &lists {
            readiness::compare(node, &asked, offered);
        }
    }
    let Some(((_, first), rest)) = lists.split_first() else {
        return nobody();
    };
    let common: Vec<&String> = first
        .iter()
        .filter(|m| m.as_str() != "engine_exchangeCapabilities")
        .filter(|m| rest.iter().all(|(_, list)| list.contains(m)))
        .collect();
    json(&common)
}

/// `engine_getClientVersionV1`: every answering EL's entries, flattened, in node order.
pub async fn client_versions(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let replies = ask_all(nodes, call).await;
    let lists = results::<Vec<serde_json::Value>>(&replies);
    if lists.is_empty() {
        return nobody();
    }
    for (node, entries) in &lists {
        record_client(node, entries.first());
    }
    let all: Vec<&serde_json::Value> = lists.iter().flat_map(|(_, entries)| entries).collect();
    json(&all)
}

/// One `engine_getBlobsV*` answer: an entry (`{blob, proof(s)}`) or null per asked hash; the
/// whole answer null when V2 lacks one.
type BlobEntries = Option<Vec<Option<Box<serde_json::value::RawValue>>>>;

fn complete(entries: &BlobEntries) -> bool {
    entries
        .as_ref()
        .is_some_and(|e| e.iter().all(Option::is_some))
}

/// `engine_getBlobsV*`: the primary's answer (a read, hedged as any) when it has every blob.
/// Otherwise every EL is asked and the answers merged blob by blob: the CL checks each blob
/// against its commitment, so any EL's copy serves, and ELs' pools differ (a blob transaction
/// reaches them at different times). V1 and V3+ answer partially (null where no EL has the
/// blob); V2 is all or nothing, so it is null unless the merged list is complete. An error
/// from the primary is the answer.
pub async fn blobs(nodes: &Nodes, call: &Call<'_>, version: u8) -> Answer {
    let first = primary::read(nodes, call).await;
    let Ok(bytes) = &first else {
        return first;
    };
    let Ok(mut merged) = serde_json::from_slice::<BlobEntries>(bytes) else {
        return first;
    };
    if complete(&merged) {
        return first;
    }
    let replies = ask_all(nodes, call).await;
    for (_, entries) in results::<BlobEntries>(&replies) {
        let Some(entries) = entries else { continue };
        let slots = merged.get_or_insert_with(|| vec![None; entries.len()]);
        for (slot, entry) in slots.iter_mut().zip(entries) {
            if slot.is_none() {
                *slot = entry;
            }
        }
    }
    if version == 2 && !complete(&merged) {
        merged = None;
    }
    json(&merged)
}

#[cfg(test)]
mod tests {
    use super::blobs;
    use crate::nodes::testing::{answering, synced_nodes};
    use crate::rpc::single;
    use bytes::Bytes;
    use std::time::Duration;

    async fn get_blobs(results: [&'static str; 3], version: u8) -> (String, Vec<usize>) {
        let els: Vec<_> = results
            .iter()
            .map(|r| answering(Duration::from_millis(5), r))
            .collect();
        let nodes = synced_nodes(&els, Duration::from_secs(1));
        let body = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"engine_getBlobsV{version}","params":[["0x01","0x02"]]}}"#
        ));
        let answer = blobs(&nodes, &single(&body), version)
            .await
            .expect("an answer");
        let asked = els
            .iter()
            .map(|e| e.seen.lock().expect("seen").len())
            .collect();
        (String::from_utf8_lossy(&answer).into_owned(), asked)
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_primary_answer_asks_no_one_else() {
        let (answer, asked) =
            get_blobs([r#"[{"blob":"0xa"},{"blob":"0xb"}]"#, "null", "null"], 2).await;
        assert_eq!(answer, r#"[{"blob":"0xa"},{"blob":"0xb"}]"#);
        assert_eq!(asked, [1, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn blobs_the_primary_lacks_come_from_the_others() {
        let (answer, asked) = get_blobs(
            [
                r#"[{"blob":"0xa"},null]"#,
                r#"[null,{"blob":"0xb"}]"#,
                "null",
            ],
            3,
        )
        .await;
        assert_eq!(answer, r#"[{"blob":"0xa"},{"blob":"0xb"}]"#);
        assert_eq!(asked, [2, 1, 1]);
        let (answer, _) =
            get_blobs(["null", r#"[{"blob":"0xa"},{"blob":"0xb"}]"#, "null"], 2).await;
        assert_eq!(answer, r#"[{"blob":"0xa"},{"blob":"0xb"}]"#);
    }

    #[tokio::test(start_paused = true)]
    async fn v2_is_null_unless_every_blob_is_found_and_v1_answers_what_there_is() {
        let (answer, _) = get_blobs([r#"[{"blob":"0xa"},null]"#, "null", "null"], 2).await;
        assert_eq!(answer, "null");
        let (answer, _) =
            get_blobs([r#"[{"blob":"0xa"},null]"#, "null", r#"[null,null]"#], 1).await;
        assert_eq!(answer, r#"[{"blob":"0xa"},null]"#);
    }
}
