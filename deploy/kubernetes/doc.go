// Package kubernetes holds the manifests that install Terrane in a
// cluster: the kustomization in this directory is the one source, and
// terrane.yaml its rendering (go generate, or scripts/render-manifest.sh).
// Its test fails when the committed terrane.yaml is not the rendering.
package kubernetes

//go:generate bash ../../scripts/render-manifest.sh
