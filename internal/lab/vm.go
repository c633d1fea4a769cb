package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

// A VM port in the lab is what an OpenStack Neutron port plus the
// hypervisor's side make of it: the address comes from the server's
// control API (the endpoint ID is the VM's name), the VM is a namespace
// whose eth0 is one end of a veth pair, and the other end sits in the
// host's namespace under api.VMPortDevice(ID), the name the host's agent
// looks for. Routing the port on the host is the agent's job, not the
// lab's: AddVM only waits for it.

// VM is a VM port to plug into a host.
type VM struct {
	Name string `json:"name"`
	Host string `json:"host"`
	// Network is the Terrane network; empty: the server's default.
	Network string `json:"network,omitempty"`
}

// VMState is one VM port the lab plugged in.
type VMState struct {
	VM
	Netns string `json:"netns"`
	// Endpoint is the endpoint's ID at the server.
	Endpoint string `json:"endpoint"`
	// Device is the host end of the port, in the host's namespace.
	Device string     `json:"device"`
	Addr   netip.Addr `json:"addr"`
	// Block is the server's block the address came from.
	Block netip.Prefix `json:"block"`
}

// VMOptions tune AddVM.
type VMOptions struct {
	// WireTimeout bounds the wait for the host's agent to route the port
	// (default vmWireTimeout).
	WireTimeout time.Duration
}

// vmWireTimeout is how long AddVM waits for the agent to route a port.
const vmWireTimeout = 10 * time.Second

// vmIfName is the VM's interface, as a guest sees its first NIC.
const vmIfName = "eth0"

// vmMTU is the port's MTU, both ends: the pods' default.
const vmMTU = 1500

// VM is a VM's namespace.
func (n Names) VM(vm string) string { return n.Prefix() + "vm-" + vm }

// VM returns the VM named name.
func (s *State) VM(name string) (VMState, bool) {
	for _, v := range s.VMs {
		if v.Name == name {
			return v, true
		}
	}
	return VMState{}, false
}

// port names the two ends of a VM's veth pair for dataplane/linux, which
// wires VM ports exactly as the CNI plugin wires pods.
func (v VMState) port(n Names) linux.PodVeth {
	return linux.PodVeth{HostNetns: NetnsPath(n.Node(v.Host)), HostName: v.Device, PodNetns: NetnsPath(v.Netns), PodName: vmIfName}
}

// checkVM checks a VM against the running lab: a valid name no pod, VM or
// node has (they share the probe matrix and `lab routes`), a known host.
func (s *State) checkVM(vm VM) error {
	var errs []string
	switch {
	case !nodeNameRe.MatchString(vm.Name):
		errs = append(errs, fmt.Sprintf("name %q: use %s", vm.Name, nodeNameRule))
	case s.taken(vm.Name) != "":
		errs = append(errs, fmt.Sprintf("name %q is taken by %s; pick another (or remove it: terrane lab rm-vm %s)", vm.Name, s.taken(vm.Name), vm.Name))
	}
	if _, ok := s.Scenario.Host(vm.Host); !ok {
		errs = append(errs, fmt.Sprintf("host %q: no such host; hosts: %s", vm.Host, list(names(s.Scenario.Hosts, func(h Host) string { return h.Name }))))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid VM: %s", strings.Join(errs, "; "))
	}
	return nil
}

// taken says what in the lab is already called name: "pod x", "VM x",
// "host x", "router x", or "".
func (s *State) taken(name string) string {
	if _, ok := s.Pod(name); ok {
		return "pod " + name
	}
	if _, ok := s.VM(name); ok {
		return "VM " + name
	}
	nodes, _ := s.Nodes()
	for _, nd := range nodes {
		if nd.Name == name {
			return nd.Kind + " " + name
		}
	}
	return ""
}

// AddVM plugs a VM port into a running lab, as Neutron and the hypervisor
// do: it allocates the port's address through the server's API, makes the
// VM's namespace and the veth pair (host end api.VMPortDevice(name), VM
// end eth0 with the address /32 and a default route via the proxy-ARP
// gateway), then waits until the host's agent routes the port and the
// routers carry any block the allocation claimed. A port the agent does
// not route in time stays in place (for inspection; RemoveVM removes it)
// and the error names what is missing.
func AddVM(ctx context.Context, name, dir string, vm VM, o VMOptions) (*VMState, error) {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := st.checkVM(vm); err != nil {
		return nil, err
	}
	c, err := AdminClient(Names{Lab: name, Dir: dir})
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	vs, err := plugVM(ctx, st, c, vm)
	if err != nil {
		return nil, err
	}
	if o.WireTimeout <= 0 {
		o.WireTimeout = vmWireTimeout
	}
	if err := waitVMWired(ctx, st, vs, o.WireTimeout); err != nil {
		return &vs, fmt.Errorf("%w\n(the port is left in place for inspection: terrane lab routes %s; remove it with terrane lab rm-vm %s)", err, vs.Host, vs.Name)
	}
	// The allocation may have claimed a block: other hosts and the
	// routers reach the VM once they carry it.
	if err := WaitFabric(ctx, st, c); err != nil {
		return &vs, err
	}
	if err := WaitBGP(ctx, st, c); err != nil {
		return &vs, err
	}
	if err := WaitVPC(ctx, st, c); err != nil {
		return &vs, err
	}
	return &vs, nil
}

// plugVM allocates the port's address and makes the VM's namespace and
// veth pair, recording the VM in st once it exists. On error nothing is
// left: the namespace is deleted and the address released.
func plugVM(ctx context.Context, st *State, c *client.Client, vm VM) (VMState, error) {
	n := st.names()
	vs := VMState{VM: vm, Netns: n.VM(vm.Name), Endpoint: vm.Name, Device: api.VMPortDevice(vm.Name)}
	// The namespace is recorded before it is made, so Down finds it.
	st.Netns = append(st.Netns, vs.Netns)
	if err := st.Save(); err != nil {
		return vs, err
	}
	res, err := c.AllocateEndpoint(ctx, api.EndpointRequest{ID: vs.Endpoint, Host: vm.Host, Network: vm.Network})
	if err != nil {
		return vs, errors.Join(fmt.Errorf("VM %s: allocate its address at the server: %w", vm.Name, err), st.forgetVM(vs))
	}
	vs.Addr, vs.Block, vs.Network = res.Endpoint.Addr, res.Endpoint.Block, res.Endpoint.Network
	if err := makeVMPort(ctx, n, vs); err != nil {
		_ = unplugVM(ctx, st, c, vs)
		return vs, errors.Join(err, st.forgetVM(vs))
	}
	st.VMs = append(st.VMs, vs)
	return vs, st.Save()
}

// makeVMPort makes the VM's namespace and wires it as a pod is wired.
func makeVMPort(ctx context.Context, n Names, vs VMState) error {
	if err := ipBatch(ctx, "", []string{"netns add " + vs.Netns}); err != nil {
		return err
	}
	if err := ipBatch(ctx, vs.Netns, []string{"link set lo up"}); err != nil {
		return err
	}
	port := vs.port(n)
	if _, err := linux.CreatePodVeth(port, vmMTU); err != nil {
		return fmt.Errorf("VM %s: %w", vs.Name, err)
	}
	if err := linux.ConfigurePod(port, netip.PrefixFrom(vs.Addr, vs.Addr.BitLen()), cniapi.GatewayV4); err != nil {
		return fmt.Errorf("VM %s: %w", vs.Name, err)
	}
	return nil
}

// unplugVM deletes the port's veth pair and namespace and releases its
// address: each step runs whatever failed before it.
func unplugVM(ctx context.Context, st *State, c *client.Client, vs VMState) error {
	var errs []error
	if err := linux.DeletePodVeth(vs.port(st.names())); err != nil {
		errs = append(errs, fmt.Errorf("VM %s: %w", vs.Name, err))
	}
	if slices.Contains(labNetns(st.names().Prefix()), vs.Netns) {
		if err := ipBatch(ctx, "", []string{"netns del " + vs.Netns}); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := c.ReleaseEndpoint(ctx, vs.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("VM %s: release endpoint %s at the server: %w", vs.Name, vs.Endpoint, err))
	}
	return errors.Join(errs...)
}

// forgetVM drops a VM from st and saves it.
func (s *State) forgetVM(vs VMState) error {
	s.VMs = slices.DeleteFunc(s.VMs, func(v VMState) bool { return v.Name == vs.Name })
	s.Netns = slices.DeleteFunc(s.Netns, func(ns string) bool { return ns == vs.Netns })
	return s.Save()
}

// RemoveVM unplugs a VM port: the veth pair and the VM's namespace go,
// then the address is released through the API, as a Neutron port delete
// ends.
func RemoveVM(ctx context.Context, name, dir, vm string) error {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	vs, ok := st.VM(vm)
	if !ok {
		return fmt.Errorf("no VM %q in lab %q", vm, name)
	}
	c, err := AdminClient(Names{Lab: name, Dir: dir})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	return errors.Join(unplugVM(ctx, st, c, vs), st.forgetVM(vs))
}

// waitVMWired waits until the host's agent has wired the port: the host
// routes the VM's address to the port's device, and the VM reaches its
// host through the gateway (proxy ARP answers, the reply comes back).
func waitVMWired(ctx context.Context, st *State, vs VMState, timeout time.Duration) error {
	h, _ := st.Scenario.Host(vs.Host)
	hostNetns := st.names().Node(vs.Host)
	deadline := time.Now().Add(timeout)
	for {
		missing := vmWiring(ctx, hostNetns, vs, h.IP)
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent on %s has not routed VM port %s (device %s) within %s: %s", vs.Host, vs.Name, vs.Device, timeout, missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// vmWiring says what the port lacks on its host, or "".
func vmWiring(ctx context.Context, hostNetns string, vs VMState, hostIP netip.Addr) string {
	var got []struct {
		Dev string `json:"dev"`
	}
	if err := ipJSON(ctx, &got, "-n", hostNetns, "route", "get", vs.Addr.String()); err != nil {
		return err.Error()
	}
	if len(got) == 0 || got[0].Dev != vs.Device {
		dev := "nothing"
		if len(got) > 0 {
			dev = "dev " + got[0].Dev
			if strings.HasPrefix(got[0].Dev, cniapi.HostVethPrefix) {
				dev += ", a pod's veth: the agent gave a pod this address too"
			}
		}
		return fmt.Sprintf("no route for %s to %s on the host (it goes to %s)", vs.Addr, vs.Device, dev)
	}
	var missing []string
	_ = ns.WithNetNSPath(NetnsPath(hostNetns), func(ns.NetNS) error {
		for _, s := range cniapi.HostSideSysctls(vs.Device) {
			b, err := os.ReadFile("/proc/sys/net/" + s[0])
			if v := strings.TrimSpace(string(b)); err != nil || v != s[1] {
				missing = append(missing, fmt.Sprintf("net/%s is %q, want %s", s[0], v, s[1]))
			}
		}
		return nil
	})
	if len(missing) > 0 {
		return strings.Join(missing, ", ")
	}
	// The whole path from the VM's side: proxy ARP for the gateway, the
	// host takes the packet in and routes the reply back to the device.
	var echo error
	err := ns.WithNetNSPath(NetnsPath(vs.Netns), func(ns.NetNS) error {
		conn, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer conn.Close()
		echo = icmpProbe(ctx, conn.(*net.IPConn), hostIP, uint16(time.Now().UnixNano()), 0)
		return nil
	})
	if err == nil {
		err = echo
	}
	if err != nil {
		return fmt.Sprintf("the VM does not reach its host %s through %s: %v", hostIP, cniapi.GatewayV4, err)
	}
	return ""
}
