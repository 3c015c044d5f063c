//go:build tools

// Package tools pins the etcd binaries built by tests/k8s/build.sh.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
