// txgen signs the transactions eb-chain sends through eb, with go-ethereum's own types and KZG
// code (the version geth is built from): EIP-1559 transfers, EIP-4844 blob transactions and
// EIP-7002 withdrawal requests. Blob sidecars carry cell proofs (version 1: geth 1.17's pool
// takes no other, even before Osaka) or, with -sidecar-version 0, one proof per blob. It prints one JSON object per line: {"kind", "raw", "hash", and for blob
// transactions "versioned_hashes", "blobs", "commitments", "proofs" (128 cell proofs per blob,
// as getBlobsV2 answers) and "blob_proofs" (one per blob, as getBlobsV1 answers)}. Everything is
// deterministic: the keys are the well-known development keys (public test material), the blobs
// are derived from the transaction's index.
//
// Usage: txgen -chain-id N -transfers T -blob-txs B -withdrawals W [-sidecar-version 0|1]
package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/crypto/kzg4844"
	"github.com/ethereum/go-ethereum/params"
	"github.com/holiman/uint256"
)

// The first two anvil/hardhat development keys: transfers and requests from the first, blob
// transactions from the second (geth keeps one account's blob and other transactions apart).
const (
	transferKey = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
	blobKey     = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
)

// Gas for a value transfer: more than 21,000, as Amsterdam charges for a new account's state
// (geth 1.17.10 estimates 207,391 for a transfer to a new account there).
const transferGas = 300_000

var (
	feeCap = big.NewInt(10_000_000_000)
	tipCap = big.NewInt(1_000_000_000)
	sink   = common.HexToAddress("0x000000000000000000000000000000000000dEaD")
)

type line struct {
	Kind            string          `json:"kind"`
	Raw             hexutil.Bytes   `json:"raw"`
	Hash            common.Hash     `json:"hash"`
	VersionedHashes []common.Hash   `json:"versioned_hashes,omitempty"`
	Blobs           []hexutil.Bytes `json:"blobs,omitempty"`
	Commitments     []hexutil.Bytes `json:"commitments,omitempty"`
	Proofs          []hexutil.Bytes `json:"proofs,omitempty"`
	BlobProofs      []hexutil.Bytes `json:"blob_proofs,omitempty"`
}

func main() {
	chainID := flag.Int64("chain-id", 1337, "chain id")
	transfers := flag.Int("transfers", 5, "EIP-1559 transfers")
	blobTxs := flag.Int("blob-txs", 10, "blob transactions (1 to 3 blobs each)")
	withdrawals := flag.Int("withdrawals", 1, "EIP-7002 withdrawal requests (after the transfers)")
	sidecarVersion := flag.Uint("sidecar-version", 1, "blob sidecar version: 1 cell proofs, 0 blob proofs")
	flag.Parse()
	if err := run(big.NewInt(*chainID), *transfers, *blobTxs, *withdrawals, byte(*sidecarVersion)); err != nil {
		fmt.Fprintln(os.Stderr, "txgen:", err)
		os.Exit(1)
	}
}

func run(chainID *big.Int, transfers, blobTxs, withdrawals int, version byte) error {
	signer := types.NewPragueSigner(chainID)
	out := json.NewEncoder(os.Stdout)
	key, err := crypto.HexToECDSA(transferKey)
	if err != nil {
		return err
	}
	nonce := uint64(0)
	for i := 0; i < transfers; i++ {
		tx := types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: nonce, GasTipCap: tipCap,
			GasFeeCap: feeCap, Gas: transferGas, To: &sink, Value: big.NewInt(1000 + int64(i))})
		if err := emit(out, "transfer", tx, signer, key, nil); err != nil {
			return err
		}
		nonce++
	}
	for i := 0; i < withdrawals; i++ {
		// EIP-7002: a 48-byte validator public key and an 8-byte amount in gwei; the fee starts
		// at 1 wei and what is sent beyond it is kept.
		data := append(common.LeftPadBytes([]byte{0xa0, byte(i)}, 48), common.LeftPadBytes(big.NewInt(1_000_000_000).Bytes(), 8)...)
		queue := params.WithdrawalQueueAddress
		tx := types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: nonce, GasTipCap: tipCap,
			GasFeeCap: feeCap, Gas: 2_000_000, To: &queue, Value: big.NewInt(1_000_000), Data: data})
		if err := emit(out, "withdrawal", tx, signer, key, nil); err != nil {
			return err
		}
		nonce++
	}
	key, err = crypto.HexToECDSA(blobKey)
	if err != nil {
		return err
	}
	for i := 0; i < blobTxs; i++ {
		sidecar, err := sidecarFor(i, 1+i%3, version)
		if err != nil {
			return err
		}
		tx := types.NewTx(&types.BlobTx{ChainID: uint256.MustFromBig(chainID), Nonce: uint64(i),
			GasTipCap: uint256.MustFromBig(tipCap), GasFeeCap: uint256.MustFromBig(feeCap),
			Gas: transferGas, To: sink, Value: uint256.NewInt(1), BlobFeeCap: uint256.NewInt(10_000_000_000),
			BlobHashes: sidecar.BlobHashes(), Sidecar: sidecar})
		if err := emit(out, "blob", tx, signer, key, sidecar); err != nil {
			return err
		}
	}
	return nil
}

// sidecarFor builds `count` blobs for transaction `index`: each 32-byte field element starts with
// a zero byte (so it is canonical) and carries the transaction, blob and element numbers.
func sidecarFor(index, count int, version byte) (*types.BlobTxSidecar, error) {
	var blobs []kzg4844.Blob
	var commitments []kzg4844.Commitment
	var proofs []kzg4844.Proof
	for b := 0; b < count; b++ {
		var blob kzg4844.Blob
		for e := 0; e < len(blob)/32; e++ {
			seed := sha256.Sum256([]byte(fmt.Sprintf("eb-chain blob %d/%d/%d", index, b, e)))
			copy(blob[e*32+1:(e+1)*32], seed[:31])
		}
		commitment, err := kzg4844.BlobToCommitment(&blob)
		if err != nil {
			return nil, err
		}
		if version == types.BlobSidecarVersion0 {
			proof, err := kzg4844.ComputeBlobProof(&blob, commitment)
			if err != nil {
				return nil, err
			}
			proofs = append(proofs, proof)
		} else {
			cells, err := kzg4844.ComputeCellProofs(&blob)
			if err != nil {
				return nil, err
			}
			proofs = append(proofs, cells...)
		}
		blobs = append(blobs, blob)
		commitments = append(commitments, commitment)
	}
	return types.NewBlobTxSidecar(version, blobs, commitments, proofs), nil
}

func emit(out *json.Encoder, kind string, tx *types.Transaction, signer types.Signer, key *ecdsa.PrivateKey, sidecar *types.BlobTxSidecar) error {
	signed, err := types.SignTx(tx, signer, key)
	if err != nil {
		return err
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		return err
	}
	l := line{Kind: kind, Raw: raw, Hash: signed.Hash()}
	if sidecar != nil {
		l.VersionedHashes = sidecar.BlobHashes()
		for i := range sidecar.Blobs {
			l.Blobs = append(l.Blobs, sidecar.Blobs[i][:])
			l.Commitments = append(l.Commitments, sidecar.Commitments[i][:])
		}
		// Both kinds of proof, whatever the sidecar carries: getBlobsV1 answers one per blob,
		// getBlobsV2 the cell proofs.
		for i := range sidecar.Blobs {
			proof, err := kzg4844.ComputeBlobProof(&sidecar.Blobs[i], sidecar.Commitments[i])
			if err != nil {
				return err
			}
			l.BlobProofs = append(l.BlobProofs, proof[:])
			cells, err := kzg4844.ComputeCellProofs(&sidecar.Blobs[i])
			if err != nil {
				return err
			}
			for _, p := range cells {
				l.Proofs = append(l.Proofs, p[:])
			}
		}
	}
	return out.Encode(l)
}
