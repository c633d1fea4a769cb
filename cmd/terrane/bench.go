package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/bench"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
	"github.com/terrane-net/terrane/internal/store/etcd/embedded"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Terrane: the store, CNI ADD/DEL latency, pod throughput",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &exitError{code: 2, err: errors.New("bench needs a subcommand: store, cni, churn, throughput or policy")}
		},
	}
	cmd.AddCommand(newBenchStoreCommand())
	cmd.AddCommand(newBenchCNICommand())
	cmd.AddCommand(newBenchBurstCommand())
	cmd.AddCommand(newBenchChurnCommand())
	cmd.AddCommand(newBenchThroughputCommand())
	cmd.AddCommand(newBenchPolicyCommand())
	cmd.AddCommand(newBenchChaosCommand())
	return cmd
}

// benchStoreFlags are `terrane bench store`'s options.
type benchStoreFlags struct {
	backend  string
	dataDir  string
	noFsync  bool
	etcd     etcdFlags
	kube     kubeFlags
	output   string
	cfg      bench.StoreConfig
	progress time.Duration
}

func newBenchStoreCommand() *cobra.Command {
	var fl benchStoreFlags
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Simulate hosts joining and claiming blocks against the embedded store, etcd or the Kubernetes API",
		Long: `store measures the control plane's state store under many nodes at once.

It runs in-process: a real server State (the allocator kept equal to the
store, every change a compare-and-swap transaction) over a real store, with no
HTTP in between, so it measures the state and the store, not the API. It
applies a topology sized for --hosts (one network in 10.0.0.0/8, blocks of
--block-size, one group per zone, hosts placed by a zone label); then
--clients goroutines share the hosts. Each host joins (one transaction), then
allocates --endpoints-per-host addresses the way the agent will: from its own
blocks, with no store write, claiming another block through the store only when
its blocks are full. Afterwards the state is loaded afresh from the store and
every block and address owned twice is counted (duplicates, which must be 0).

bolt uses a fresh file in a temporary directory under --data-dir (default: the
system's); etcd without --etcd-endpoints starts a single-member embedded etcd
there. Both are removed afterwards. With --etcd-endpoints the records go under
a fresh --etcd-prefix (default /terrane-bench/<time>/), which must be empty and
is deleted afterwards. Both fsync every commit unless --no-fsync. kubernetes
uses --kubeconfig and --kube-namespace (which must hold no store records yet;
they are deleted afterwards).

Progress goes to stderr every second; the result to stdout.`,
		Example: `  terrane bench store --backend bolt --hosts 5000 --clients 100
  terrane bench store --backend etcd --hosts 2000 --clients 1 --endpoints-per-host 200 -o json
  terrane bench store --backend etcd --etcd-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 --hosts 1000 --clients 10
  terrane bench store --backend kubernetes --kubeconfig ~/.kube/config --kube-namespace terrane-bench --hosts 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("etcd-prefix") {
				fl.etcd.prefix = fmt.Sprintf("/terrane-bench/%d/", time.Now().UnixNano())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBenchStore(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.backend, "backend", "bolt", "store: bolt (embedded file), etcd or kubernetes")
	f.StringVar(&fl.dataDir, "data-dir", "", "directory for the bolt file or the embedded etcd's data (default: the system's temporary directory)")
	f.BoolVar(&fl.noFsync, "no-fsync", false, "skip fsync in bolt and the embedded etcd (measures without the disk)")
	f.IntVar(&fl.cfg.Hosts, "hosts", 1000, "hosts that join")
	f.IntVar(&fl.cfg.Clients, "clients", 10, "concurrent clients the hosts are shared among")
	f.IntVar(&fl.cfg.EndpointsPerHost, "endpoints-per-host", 1, "endpoints each host allocates node-locally")
	f.IntVar(&fl.cfg.BlockSize, "block-size", 26, "prefix length of a block (26: 64 addresses)")
	f.IntVar(&fl.cfg.Zones, "zones", 3, "groups the hosts are spread over by zone label")
	f.StringVarP(&fl.output, "output", "o", "table", "output: table or json")
	f.DurationVar(&fl.progress, "progress", time.Second, "interval of progress lines on stderr (0: none)")
	fl.etcd.register(f)
	fl.kube.register(f)
	if p := f.Lookup("etcd-prefix"); p != nil {
		p.DefValue = "/terrane-bench/<time>/"
		p.Usage = "key prefix for the benchmark's records in etcd; it must be empty"
	}
	return cmd
}

func runBenchStore(ctx context.Context, stdout, stderr io.Writer, fl *benchStoreFlags) error {
	if err := fl.check(); err != nil {
		return &exitError{code: 2, err: err}
	}
	st, cleanup, err := openBenchStore(ctx, stderr, fl)
	if err != nil {
		return err
	}
	defer cleanup()
	fl.cfg.Backend, fl.cfg.Store = fl.backend, st
	if fl.progress > 0 {
		fl.cfg.Progress, fl.cfg.ProgressEvery = stderr, fl.progress
	}
	fmt.Fprintf(stderr, "bench: %d hosts, %d clients, %d endpoints per host, /%d blocks, %s\n",
		fl.cfg.Hosts, fl.cfg.Clients, fl.cfg.EndpointsPerHost, fl.cfg.BlockSize, fl.backend)
	res, err := bench.RunStore(ctx, fl.cfg)
	if err != nil {
		return fmt.Errorf("bench store: %w", err)
	}
	if err := printBenchStore(stdout, fl.output, res); err != nil {
		return err
	}
	if res.Duplicates > 0 || res.Lost > 0 || res.Findings > 0 {
		return &exitError{code: 1, err: fmt.Errorf("bench store: the store is inconsistent after the run: %d duplicates, %d lost claims, %d findings", res.Duplicates, res.Lost, res.Findings)}
	}
	return nil
}

// check refuses bad flags before anything starts.
func (fl *benchStoreFlags) check() error {
	var errs []error
	switch fl.backend {
	case "bolt":
		if len(fl.etcd.endpoints) > 0 {
			errs = append(errs, errors.New("--etcd-endpoints is for --backend etcd"))
		}
	case "etcd":
		if fl.noFsync && len(fl.etcd.endpoints) > 0 {
			errs = append(errs, errors.New("--no-fsync applies to the embedded etcd only, not to --etcd-endpoints"))
		}
	case "kubernetes":
		if len(fl.etcd.endpoints) > 0 {
			errs = append(errs, errors.New("--etcd-endpoints is for --backend etcd"))
		}
		if fl.noFsync {
			errs = append(errs, errors.New("--no-fsync does not apply to --backend kubernetes"))
		}
	default:
		errs = append(errs, fmt.Errorf("--backend %q: use bolt, etcd or kubernetes", fl.backend))
	}
	if fl.output != "table" && fl.output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: use table or json", fl.output))
	}
	if fl.progress < 0 {
		errs = append(errs, fmt.Errorf("--progress %s: use 0 (none) or a positive interval", fl.progress))
	}
	if fl.dataDir != "" {
		if fi, err := os.Stat(fl.dataDir); err != nil {
			errs = append(errs, fmt.Errorf("--data-dir: %w", err))
		} else if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--data-dir %s is not a directory", fl.dataDir))
		}
	}
	// The workload's own limits: sizes, and runs that do not fit 10.0.0.0/8.
	errs = append(errs, fl.cfg.Validate())
	return errors.Join(errs...)
}

// openBenchStore opens the store the flags name, starting an embedded etcd
// or making a temporary bolt file as needed. cleanup closes the store and
// removes what was made.
func openBenchStore(ctx context.Context, stderr io.Writer, fl *benchStoreFlags) (store.Store, func(), error) {
	if fl.backend == "bolt" {
		dir, err := os.MkdirTemp(fl.dataDir, "terrane-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench store: %w", err)
		}
		path := filepath.Join(dir, "terrane.db")
		fmt.Fprintf(stderr, "bench: bolt store in %s (removed afterwards)\n", path)
		st, err := bolt.Open(path, bolt.Options{NoSync: fl.noFsync})
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, fmt.Errorf("bench store: %w", err)
		}
		return st, func() { st.Close(); os.RemoveAll(dir) }, nil
	}
	if fl.backend == "kubernetes" || len(fl.etcd.endpoints) > 0 {
		var (
			st    store.Store
			err   error
			where string
		)
		if fl.backend == "kubernetes" {
			where = "namespace " + fl.kube.namespace
			fmt.Fprintf(stderr, "bench: Kubernetes API, %s (records deleted afterwards)\n", where)
			st, err = fl.kube.open(ctx)
		} else {
			where = "prefix " + fl.etcd.prefix
			fmt.Fprintf(stderr, "bench: etcd at %s under %s (deleted afterwards)\n", strings.Join(fl.etcd.endpoints, ","), where)
			st, err = fl.etcd.open(ctx)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("bench store: %w", err)
		}
		// Everything there is deleted afterwards: it must hold nothing but
		// what this run writes.
		kvs, _, err := st.List(ctx, "")
		if err == nil && len(kvs) > 0 {
			err = fmt.Errorf("%s already holds %d records (first: %s); the benchmark needs an empty one and deletes it afterwards", where, len(kvs), kvs[0].Key)
		}
		if err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("bench store: %w", err)
		}
		return st, func() {
			if err := deleteAll(context.WithoutCancel(ctx), st); err != nil {
				fmt.Fprintf(stderr, "bench: delete the benchmark's records in %s: %v\n", where, err)
			}
			st.Close()
		}, nil
	}
	start := time.Now()
	eps, dir, stop, err := embedded.Start(ctx, embedded.Options{Dir: fl.dataDir, NoFsync: fl.noFsync})
	if err != nil {
		return nil, nil, fmt.Errorf("bench store: start an embedded etcd: %w", err)
	}
	fmt.Fprintf(stderr, "bench: no --etcd-endpoints: started an embedded single-member etcd at %s in %s in %s (removed afterwards)\n",
		strings.Join(eps, ","), dir, time.Since(start).Round(time.Millisecond))
	fl.etcd.endpoints = eps
	st, err := fl.etcd.open(ctx)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("bench store: %w", err)
	}
	return st, func() { st.Close(); stop() }, nil
}

// deleteAll removes every record of a store, a transaction of at most
// store.MaxTxnOps deletes at a time.
func deleteAll(ctx context.Context, st store.Store) error {
	kvs, _, err := st.List(ctx, "")
	if err != nil {
		return err
	}
	for len(kvs) > 0 {
		n := min(len(kvs), store.MaxTxnOps)
		ops := make([]store.Op, n)
		for i, kv := range kvs[:n] {
			ops[i] = store.Delete(kv.Key, kv.Revision)
		}
		if _, err := st.Txn(ctx, ops...); err != nil {
			return err
		}
		kvs = kvs[n:]
	}
	return nil
}

func printBenchStore(w io.Writer, output string, r *bench.StoreResult) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, v ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, v...)...) }
	row("backend", "%s", r.Backend)
	row("hosts / clients", "%d / %d", r.Hosts, r.Clients)
	row("network", "%s, /%d blocks, %d endpoints per host", r.Network, r.BlockSize, r.EndpointsPerHost)
	row("endpoints (node-local)", "%d", r.Endpoints)
	row("joins / claims", "%d / %d", r.Joins, r.Claims)
	row("claims per second", "%.0f", r.ClaimsPerSecond)
	row("claim p50 / p99 / max", "%.2f / %.2f / %.2f ms", r.ClaimP50Ms, r.ClaimP99Ms, r.ClaimMaxMs)
	row("join p50 / p99", "%.2f / %.2f ms", r.JoinP50Ms, r.JoinP99Ms)
	row("store writes / commits", "%d / %d", r.Writes, r.Commits)
	row("writes per endpoint", "%.4f", r.WritesPerEndpoint)
	row("conflict retries / errors", "%d / %d", r.Retries, r.Errors)
	row("duplicates / lost / findings", "%d / %d / %d", r.Duplicates, r.Lost, r.Findings)
	row("wall time", "%.2f s", r.WallSeconds)
	row("peak RSS", "%.0f MiB", r.PeakRSSMB)
	return tw.Flush()
}
