package ipam

import (
	"errors"
	"fmt"
	"testing"
)

// TestFirstBlockOverBudget: three cloud subnets cannot share a 2-route
// table (a populated subnet is a route of its own, whatever its
// neighbours). The third subnet's first block is refused before it is
// handed out, the error names the group and the budget, and nothing
// changes; the endpoint that needed it fails the same way.
func TestFirstBlockOverBudget(t *testing.T) {
	a := mustNew(t, fmt.Sprintf(vpcYAML, "vpc", ""), Options{Budgets: Budgets{VPC: 2}})
	for _, z := range []string{"a", "b", "c"} {
		mustAddHost(t, a, "h"+z, map[string]string{"zone": z})
	}
	for _, h := range []string{"ha", "hb"} {
		if _, _, err := a.ClaimBlock(h, "net"); err != nil {
			t.Fatalf("claim for %s within the budget: %v", h, err)
		}
	}
	err := unchanged(t, a, func() ([]Change, error) { _, ch, err := a.ClaimBlock("hc", "net"); return ch, err })
	wantErr(t, err, ErrRouteBudget, "first block for group c", "3 vpc routes", "budget of 2")
	var be *BudgetError
	if !errors.As(err, &be) || be.Group != "c" || be.Target != "vpc" || be.Need != 3 || be.Budget != 2 || !be.First {
		t.Fatalf("error %v: want a BudgetError for group c needing 3 vpc routes of 2, first block", err)
	}
	if v, _ := a.RouteFloors("net"); v != 2 {
		t.Errorf("vpc floor %d after the refusal, want 2", v)
	}
	err = unchanged(t, a, allocOp(a, EndpointRequest{ID: "e", Host: "hc"}))
	if !errors.As(err, &be) || be.Group != "c" {
		t.Fatalf("endpoint on hc: %v, want a BudgetError naming group c", err)
	}
	// A VM port asking for a specific address in c's space is refused the
	// same way: its block would be c's first.
	at := a.GroupPrefixes("net")["c"][0].Addr().Next()
	err = unchanged(t, a, allocOp(a, EndpointRequest{ID: "vm", Host: "hc", Addr: at}))
	if !errors.As(err, &be) || be.Group != "c" || !be.First {
		t.Fatalf("address %s on hc: %v, want a BudgetError naming group c's first block", at, err)
	}
	// Room in the budget again (subnet b's block released): c gets its block.
	for _, p := range a.Blocks("net") {
		if p.Host == "hb" {
			if _, err := a.ReleaseBlock("hb", "net", p.Prefix); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := a.ClaimBlock("hc", "net"); err != nil {
		t.Fatalf("claim for hc with b's block released: %v", err)
	}
}

// TestGrowthOverBudgetNamesTheGroup: growth refused on the budget names
// the group that grows.
func TestGrowthOverBudgetNamesTheGroup(t *testing.T) {
	a := mustNew(t, fmt.Sprintf(vpcYAML, "vpc", ""), Options{Budgets: Budgets{VPC: 3}})
	for _, z := range []string{"a", "b", "c"} {
		mustAddHost(t, a, "h"+z, map[string]string{"zone": z})
		if _, _, err := a.ClaimBlock("h"+z, "net"); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		_, _, err = a.AllocateEndpoint(EndpointRequest{ID: fmt.Sprint("e", i), Host: "ha", Network: "net"})
	}
	var be *BudgetError
	if !errors.As(err, &be) || be.Group != "a" || be.Target != "vpc" || be.First || be.Budget != 3 || be.Need <= 3 {
		t.Fatalf("filling group a: %v, want a BudgetError for growing group a over the vpc budget of 3", err)
	}
	if v, _ := a.RouteFloors("net"); v > 3 {
		t.Errorf("vpc floor %d over the budget of 3", v)
	}
}
