package k8stest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// CompactEtcd compacts the cluster's etcd to its current revision, as
// kube-apiserver does every 5 minutes: history before it is gone, and a
// watch from an older resourceVersion that etcd must serve gets 410 Gone.
// It returns the revision compacted to.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	// etcd's JSON gateway: a range read for its header's revision, then
	// a compaction to it.
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := c.etcdCall(ctx, "/v3/kv/range", map[string]any{"key": "AA=="}, &rng); err != nil {
		return 0, fmt.Errorf("compact etcd: read revision: %w", err)
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("compact etcd: revision %q: %w", rng.Header.Revision, err)
	}
	if err := c.etcdCall(ctx, "/v3/kv/compaction", map[string]any{"revision": rng.Header.Revision, "physical": true}, nil); err != nil {
		return 0, fmt.Errorf("compact etcd to %d: %w", rev, err)
	}
	return rev, nil
}

func (c *Cluster) etcdCall(ctx context.Context, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.etcdURL+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, respBody)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(respBody, out)
}
