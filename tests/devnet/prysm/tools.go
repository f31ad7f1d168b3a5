//go:build tools

// Package tools names the Prysm commands this module builds, so `go mod tidy` keeps them.
package tools

import (
	_ "github.com/OffchainLabs/prysm/v7/cmd/beacon-chain"
	_ "github.com/OffchainLabs/prysm/v7/cmd/prysmctl"
	_ "github.com/OffchainLabs/prysm/v7/cmd/validator"
)
