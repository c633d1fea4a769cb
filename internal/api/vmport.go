package api

import (
	"crypto/sha256"
	"encoding/hex"
)

// VMPortDevice names the host-side interface of a VM port (an endpoint
// allocated through the API): "tap" and 11 hex digits of the SHA-256 of the
// port's ID, 14 characters, within Linux's 15. Whoever plugs the VM in (the
// hypervisor's Neutron agent, `terrane lab add-vm`) creates the device
// under this name in the host's network namespace; the host's Terrane agent
// finds it there, routes the port's address to it and reports the port as
// wired. Neutron names its taps "tap" + the port ID's first 11 characters;
// a hash keeps any ID (which may hold characters a link name cannot) usable.
func VMPortDevice(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "tap" + hex.EncodeToString(sum[:])[:11]
}
