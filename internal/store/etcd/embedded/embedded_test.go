package embedded

import (
	"context"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	ctx := context.Background()
	parent := t.TempDir()
	eps, dir, stop, err := Start(ctx, Options{Dir: parent, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		stop()
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := cli.Put(tctx, "k", "v"); err != nil {
		t.Errorf("put to %v: %v", eps, err)
	}
	cli.Close()
	stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s after stop: %v, want it removed", dir, err)
	}
}

func TestStartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	if _, _, stop, err := Start(ctx, Options{Dir: parent, NoFsync: true}); err == nil {
		stop()
		t.Fatal("started with a cancelled context")
	}
	if left, _ := os.ReadDir(parent); len(left) > 0 {
		t.Errorf("a failed start left %d entries behind", len(left))
	}
}
