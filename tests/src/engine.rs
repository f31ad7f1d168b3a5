//! Engine API request bodies for tests, shaped like the spec's (and `fixtures/engine`).

use serde_json::{json, Value};

/// A 32-byte hash made from a label.
pub fn hash(label: &str) -> String {
    let bytes: Vec<u8> = label.bytes().cycle().take(32).collect();
    format!(
        "0x{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// `engine_newPayloadV{version}` for block `block` with `id`.
pub fn new_payload(id: u64, version: u8, block: &str) -> Value {
    let payload = json!({
        "parentHash": hash("parent"), "feeRecipient": "0x0000000000000000000000000000000000000001",
        "stateRoot": hash("state"), "receiptsRoot": hash("receipts"), "logsBloom": format!("0x{}", "00".repeat(256)),
        "prevRandao": hash("randao"), "blockNumber": "0x1", "gasLimit": "0x1c9c380", "gasUsed": "0x0",
        "timestamp": "0x6720c9a0", "extraData": "0x", "baseFeePerGas": "0x7", "blockHash": hash(block),
        "transactions": [], "withdrawals": [], "blobGasUsed": "0x0", "excessBlobGas": "0x0"
    });
    json!({"jsonrpc": "2.0", "id": id, "method": format!("engine_newPayloadV{version}"),
           "params": [payload, [], hash("beacon-root"), []]})
}

/// A newPayloadV4 whose transactions make the body about `kib` KiB.
pub fn new_payload_sized(id: u64, block: &str, kib: usize) -> Value {
    let mut request = new_payload(id, 4, block);
    let tx = format!("0x02{}", "ab".repeat(1023));
    request["params"][0]["transactions"] = json!(vec![tx; kib / 2]);
    request
}

/// `engine_forkchoiceUpdatedV{version}` to `head`, with payload attributes when `build`.
pub fn forkchoice(id: u64, version: u8, head: &str, build: bool) -> Value {
    let state = json!({"headBlockHash": hash(head), "safeBlockHash": hash(head), "finalizedBlockHash": hash("parent")});
    let attributes = build.then(|| {
        json!({
            "timestamp": "0x6720c9ac", "prevRandao": hash("randao2"),
            "suggestedFeeRecipient": "0x0000000000000000000000000000000000000001",
            "withdrawals": [], "parentBeaconBlockRoot": hash("beacon-root")
        })
    });
    json!({"jsonrpc": "2.0", "id": id, "method": format!("engine_forkchoiceUpdatedV{version}"),
           "params": [state, attributes]})
}

/// `engine_getPayloadV{version}` for `payload_id`.
pub fn get_payload(id: u64, version: u8, payload_id: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": format!("engine_getPayloadV{version}"), "params": [payload_id]})
}

/// Any method with params.
pub fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}
