// Prints COUNT signed EIP-1559 transfers (nonces 0..COUNT-1) from the devnet's prefunded test
// account, one JSON object per line: {"raw": "0x…", "hash": "0x…"}. It uses the modules of the
// EthereumJS install: run it with NODE_PATH=<that install>/node_modules.
// Usage: node sign-txs.cjs CHAIN_ID COUNT
'use strict'
const { createFeeMarket1559Tx } = require('@ethereumjs/tx')
const { createCustomCommon, Mainnet, Hardfork } = require('@ethereumjs/common')
const { hexToBytes, bytesToHex } = require('@ethereumjs/util')

// The first well-known development key (anvil/hardhat): public test material, never a secret.
const KEY = hexToBytes('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
const [chainId, count] = process.argv.slice(2).map(Number)
if (!Number.isInteger(chainId) || !Number.isInteger(count) || count < 0) {
  console.error('usage: node sign-txs.cjs CHAIN_ID COUNT')
  process.exit(2)
}
const common = createCustomCommon({ chainId }, Mainnet, { hardfork: Hardfork.Shanghai })
for (let nonce = 0; nonce < count; nonce++) {
  const tx = createFeeMarket1559Tx(
    {
      nonce,
      to: '0x000000000000000000000000000000000000dEaD',
      value: 1000n + BigInt(nonce),
      gasLimit: 21000n,
      maxFeePerGas: 10_000_000_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
      chainId,
    },
    { common },
  ).sign(KEY)
  console.log(JSON.stringify({ raw: bytesToHex(tx.serialize()), hash: bytesToHex(tx.hash()) }))
}
