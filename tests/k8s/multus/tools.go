//go:build tools

// Package tools pins the Multus thin plugin binary (cmd/multus) built by
// tests/k8s/build.sh.
package tools

import (
	_ "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"
)
