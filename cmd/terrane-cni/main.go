// Command terrane-cni is Terrane's CNI plugin (spec 1.1: ADD, DEL, CHECK,
// STATUS, GC, VERSION). The runtime runs it in the host's network namespace;
// it wires the pod's veth pair and asks the node agent, over its unix socket,
// for the address. See docs/cni.md.
package main

import (
	"log"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/terrane-net/terrane/internal/cniplugin"
)

func main() {
	// The command runs one step at a time. A second P only has the runtime
	// wake and start threads to look for work, and a node starting its
	// pods runs a hundred plugin processes at once (0.3 ms of CPU per ADD
	// in `terrane bench burst`). GOMAXPROCS in the environment still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	p := cniplugin.New()
	// Not skel.PluginMainFuncs: its error result lacks cniVersion.
	if e := skel.PluginMainFuncsWithError(p.Funcs(), cniplugin.Versions, cniplugin.About); e != nil {
		if err := p.PrintError(e); err != nil {
			log.Print("writing the error result: ", err)
		}
		os.Exit(1)
	}
}
