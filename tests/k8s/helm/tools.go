//go:build tools

// Package tools pins the helm binary built by tests/k8s/build.sh.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
