// Command labpod is the one program of the lab's container images, built
// static and packed by internal/kubenode: with no argument it is the pod
// sandbox's pause process (it waits for SIGTERM or SIGINT and reaps
// nothing: containers share no PID namespace in the lab); `labpod serve
// ADDR` is the test workload, answering every TCP connection on ADDR with
// the pod's hostname and a line break, then closing it.
//
// It imports only the standard library: kubenode builds it from its
// embedded source with the Go toolchain and nothing else.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) > 2 && os.Args[1] == "serve" {
		l, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "labpod:", err)
			os.Exit(1)
		}
		name, _ := os.Hostname()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, name)
				c.Close()
			}
		}()
		fmt.Println("labpod: serving", l.Addr(), "as", name)
	} else if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: labpod [serve ADDR]")
		os.Exit(2)
	}
	<-sig
}
