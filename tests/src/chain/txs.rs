//! The transactions eb-chain sends through eb, signed by `tests/devnet/txgen` (go-ethereum's own
//! transaction types and KZG code): transfers, blob transactions and withdrawal requests.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// One signed transaction, as txgen prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct Tx {
    /// `transfer`, `withdrawal` or `blob`.
    pub kind: String,
    /// The raw transaction (with its blob sidecar, for blob transactions).
    pub raw: String,
    /// Its hash.
    pub hash: String,
    /// Blob transactions: the versioned hashes.
    #[serde(default)]
    pub versioned_hashes: Vec<String>,
    /// The blobs.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// The KZG commitments.
    #[serde(default)]
    pub commitments: Vec<String>,
    /// The sidecar's cell proofs, 128 per blob (what getBlobsV2 answers).
    #[serde(default)]
    pub proofs: Vec<String>,
    /// One proof per blob (what getBlobsV1 answers).
    #[serde(default)]
    pub blob_proofs: Vec<String>,
}

/// What to sign.
pub struct Plan {
    /// EIP-1559 transfers.
    pub transfers: usize,
    /// EIP-7002 withdrawal requests.
    pub withdrawals: usize,
    /// Blob transactions (1 to 3 blobs each).
    pub blob_txs: usize,
    /// Their sidecars' version: 1 cell proofs, 0 one proof per blob.
    pub sidecar_version: u8,
}

/// Runs `txgen` for `plan` on chain `chain_id`.
pub fn sign(txgen: &Path, chain_id: u64, plan: &Plan) -> Result<Vec<Tx>, String> {
    let mut command = Command::new(txgen);
    command.args([
        "-chain-id",
        &chain_id.to_string(),
        "-transfers",
        &plan.transfers.to_string(),
        "-withdrawals",
        &plan.withdrawals.to_string(),
        "-blob-txs",
        &plan.blob_txs.to_string(),
        "-sidecar-version",
        &plan.sidecar_version.to_string(),
    ]);
    let output = command
        .output()
        .map_err(|e| format!("{}: {e}", txgen.display()))?;
    if !output.status.success() {
        return Err(format!(
            "txgen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| format!("txgen printed {e}")))
        .collect()
}

/// EIP-4844's versioned hash of a KZG commitment (`0x…`): 0x01 ‖ sha256(commitment)[1..].
pub fn versioned_hash(commitment: &str) -> Option<String> {
    let bytes = hex::decode(commitment.strip_prefix("0x")?).ok()?;
    let mut hash = Sha256::digest(bytes);
    hash[0] = 1;
    Some(format!("0x{}", hex::encode(hash)))
}

#[cfg(test)]
mod tests {
    use super::versioned_hash;

    #[test]
    fn versioned_hash_of_the_point_at_infinity() {
        // The commitment to the zero blob is the compressed point at infinity; the expected
        // hash was computed apart, with Python's hashlib.
        let infinity = format!("0xc0{}", "00".repeat(47));
        assert_eq!(
            versioned_hash(&infinity).as_deref(),
            Some("0x010657f37554c781402a22917dee2f75def7ab966d7b770905398eba3c444014")
        );
        assert_eq!(versioned_hash("nothex"), None);
    }
}
