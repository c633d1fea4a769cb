// Package crds ships the CustomResourceDefinitions of Terrane's Kubernetes
// store as YAML (apply them with kubectl apply -f deploy/kubernetes/crds/)
// and embeds them for the store, which can install them itself.
package crds

import "embed"

// FS holds every *.yaml file of this directory.
//
//go:embed *.yaml
var FS embed.FS
