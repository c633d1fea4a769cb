package policy

// Exported for the external differential test (upstream_test.go).
var (
	RandomCluster = randomCluster
)
