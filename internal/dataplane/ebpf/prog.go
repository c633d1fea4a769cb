//go:build linux

package ebpf

import "github.com/cilium/ebpf/asm"

// Offsets in struct __sk_buff, in the Ethernet header and in the IPv4
// header (from the frame's start), and return codes.
const (
	skbPktType = 4  // __sk_buff.pkt_type
	skbIfindex = 40 // __sk_buff.ifindex: the device the program runs on
	skbData    = 76
	skbDataEnd = 80

	ethProto = 12
	ipSaddr  = 14 + 12
	ipDaddr  = 14 + 16
	minLen   = 14 + 20

	ethPIPv4LE = 0x0008 // ETH_P_IP (0x0800) as loaded on a little-endian CPU

	packetHost = 0 // PACKET_HOST

	tcxNext = -1 // TCX_NEXT: on to the next program or the stack
)

// parseIPv4 checks the frame is IPv4 and long enough for its header and
// leaves R6 = ctx, R2 = data; it jumps to "pass" otherwise.
func parseIPv4() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, minLen),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, ethProto, asm.Half),
		asm.JNE.Imm(asm.R4, ethPIPv4LE, "pass"),
	}
}

// toLocalPod looks the destination (on the stack at FP-4) up in the pod
// map; on a hit it rewrites the Ethernet addresses and returns
// bpf_redirect_peer's verdict, on a miss it jumps to miss. A pod stood
// aside for policy (ifindex 0) is passed to the stack.
func toLocalPod(pods int, miss string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, pods),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R4, asm.R7, 0, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "pass"),
		// bpf_skb_store_bytes(skb, 0, &value.pod_mac, 12, 0): destination
		// pod MAC, source host veth MAC.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, 4),
		asm.Mov.Imm(asm.R4, 12),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnSkbStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		// bpf_redirect_peer(value.ifindex, 0)
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirectPeer.Call(),
		asm.Return(),
	}
}

func pass() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	}
}

// uplinkProgram runs on the uplink's ingress: an IPv4 packet addressed to
// this host (PACKET_HOST) for a local pod goes into the pod.
func uplinkProgram(pods int) asm.Instructions {
	var p asm.Instructions
	p = append(p, parseIPv4()...)
	p = append(p,
		asm.LoadMem(asm.R4, asm.R6, skbPktType, asm.Word),
		asm.JNE.Imm(asm.R4, packetHost, "pass"),
		asm.LoadMem(asm.R4, asm.R2, ipDaddr, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R4, asm.Word),
	)
	p = append(p, toLocalPod(pods, "pass")...)
	return append(p, pass()...)
}

// vethProgram runs on a pod's host-side veth ingress (packets from the
// pod). A packet whose source is not the pod's own address (the pod map's
// entry for it names another veth, or none) is passed to the stack, where
// strict reverse-path filtering drops it. A packet for a local pod goes
// into that pod; one for another address of a Terrane network goes out of
// the uplink after the kernel's FIB lookup and neighbour resolution
// (bpf_redirect_neigh); anything else is passed.
func vethProgram(pods, nets, uplink int) asm.Instructions {
	var p asm.Instructions
	p = append(p, parseIPv4()...)
	p = append(p,
		asm.LoadMem(asm.R4, asm.R2, ipDaddr, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R4, asm.Word),
		asm.LoadMem(asm.R4, asm.R2, ipSaddr, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R4, asm.Word),
		// The source must be a pod of this very veth.
		asm.LoadMapPtr(asm.R1, pods),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R4, asm.R0, 0, asm.Word),
		asm.LoadMem(asm.R5, asm.R6, skbIfindex, asm.Word),
		asm.JNE.Reg(asm.R4, asm.R5, "pass"),
	)
	p = append(p, toLocalPod(pods, "remote")...)
	p = append(p,
		// LPM key {prefixlen 32, daddr} at FP-16.
		asm.StoreImm(asm.RFP, -16, 32, asm.Word).WithSymbol("remote"),
		asm.LoadMem(asm.R4, asm.RFP, -4, asm.Word),
		asm.StoreMem(asm.RFP, -12, asm.R4, asm.Word),
		asm.LoadMapPtr(asm.R1, nets),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		// bpf_redirect_neigh(uplink, NULL, 0, 0)
		asm.Mov.Imm(asm.R1, int32(uplink)),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
	return append(p, pass()...)
}
