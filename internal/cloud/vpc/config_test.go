package vpc

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
provider: aws
region: us-east-1
endpoint: http://127.0.0.1:4599
routeTables:
  - id: rtb-0a1
    groups: [us-east-1a, us-east-1b/]
  - id: rtb-0b2
    budget: 100
    ipv6Budget: 20
interval: 5s
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceLabel != DefaultInstanceLabel || c.Interval != 5*time.Second || c.HeartbeatTimeout != DefaultHeartbeatTimeout {
		t.Errorf("defaults: %+v", c)
	}
	if got := c.Tables[0]; got.Budget4 != 50 || got.Budget6 != 50 || len(got.Groups) != 2 || got.Groups[1] != "us-east-1b" {
		t.Errorf("table 0 = %+v", got)
	}
	if got := c.Tables[1]; got.Budget4 != 100 || got.Budget6 != 20 || got.Groups != nil {
		t.Errorf("table 1 = %+v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`
provider: gcp
endpoint: ftp://x
instanceLabel: "bad label"
interval: 10ms
extra: 1
routeTables:
  - id: rtb-1
    groups: [a, a, ""]
    budget: 1001
  - id: rtb-1
    ipv6Budget: 1.5
    colour: red
  - {groups: b}
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`extra: unknown field`,
		`provider: "gcp" is not a provider; use aws`,
		`region: required`,
		`endpoint: "ftp://x": want a URL`,
		`instanceLabel: "bad label" is not a valid label key`,
		`interval: "10ms": want a duration from 1s to 24h`,
		`routeTables[0].groups[1]: "a" is listed twice`,
		`routeTables[0].groups[2]: want a group path`,
		`routeTables[0].budget: 1001: want a whole number of routes from 1 to 1000`,
		`routeTables[1].id: rtb-1 is already routeTables[0]`,
		`routeTables[1].ipv6Budget: 1.5`,
		`routeTables[1].colour: unknown field`,
		`routeTables[2].id: required`,
		`routeTables[2].groups: want a list of group paths`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, bad := range []string{"", "[]", "provider: aws\nregion: x\nrouteTables: []", "{{"} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("provider: aws\nregion: us-east-1\nrouteTables: [{id: rtb-1, groups: [a], budget: 5}]"))
	f.Add([]byte(`{"provider":"aws","routeTables":[{"id":"rtb-x","budget":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, tb := range c.Tables {
			if tb.Budget4 < 1 || tb.Budget4 > MaxBudget || tb.Budget6 < 1 || tb.Budget6 > MaxBudget {
				t.Fatalf("budget out of range accepted: %+v", tb)
			}
		}
		if len(c.Tables) == 0 || c.Region == "" || c.Provider != "aws" {
			t.Fatalf("incomplete config accepted: %+v", c)
		}
	})
}

// TestDocsConfig: the example in docs/vpc.md is valid.
func TestDocsConfig(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/vpc.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml vpc-config\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/vpc.md has no ```yaml vpc-config block")
	}
	c, err := ParseConfig([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tables) != 2 || c.Tables[1].Budget6 != 20 || c.Endpoint != "http://127.0.0.1:4599" {
		t.Errorf("docs config = %+v", c)
	}
}
