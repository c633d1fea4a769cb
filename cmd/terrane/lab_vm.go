package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/lab"
)

func newLabAddVMCommand(f *labFlags) *cobra.Command {
	var vm lab.VM
	cmd := &cobra.Command{
		Use:   "add-vm NAME --host HOST [--network N]",
		Short: "Plug a VM port into a host, as Neutron and the hypervisor do",
		Long: `add-vm does what an OpenStack Neutron port and the hypervisor's side do for a
VM: it allocates the port's address through the server's control API (endpoint
ID NAME, on HOST), makes the VM's namespace terrane-lab-<lab>-vm-NAME and a veth
pair whose host end, in HOST's namespace, is named as the host's agent expects
(tap + 11 hex digits of the port ID's SHA-256), and whose other end is the VM's
eth0 with the address /32 and a default route via 169.254.1.1.

Routing the port on the host is the agent's part: add-vm waits up to 10 s for
the host to route the address to the device and for the VM to reach its host,
then for the routers to carry any block the allocation claimed. If the agent
does not, the port is left in place and the error names what is missing.
docs/vm.md walks through the flow.`,
		Example: `  terrane lab add-vm vm1 --host host-2
  terrane lab add-vm db --host host-1 --network red -o json   # in lab up --scenario two-networks`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := f.json()
			if err != nil {
				return err
			}
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			vm.Name = args[0]
			ctx, stop := labContext(cmd)
			defer stop()
			vs, err := lab.AddVM(ctx, f.name, f.labDir(), vm, lab.VMOptions{})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), vs)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "VM %s on %s: %s on network %s (endpoint %s, device %s, netns %s)\n",
				vs.Name, vs.Host, vs.Addr, vs.Network, vs.Endpoint, vs.Device, vs.Netns)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&vm.Host, "host", "", "the host (hypervisor) the VM runs on (required)")
	fl.StringVar(&vm.Network, "network", "", "the Terrane network (default: the server's default network)")
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}

func newLabRmVMCommand(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm-vm NAME",
		Short: "Unplug a VM port: delete its namespace and device, release its address through the API",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			if err := lab.RemoveVM(ctx, f.name, f.labDir(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "VM %s removed, its address released\n", args[0])
			return nil
		},
	}
}
