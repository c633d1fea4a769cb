package metrics

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are scraped metric families by name.
type Families map[string]*dto.MetricFamily

// Parse reads Prometheus' text exposition format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	return Families(fams), err
}

// Scrape gets url and parses the answer. A status other than 200 is an
// error.
func Scrape(c *http.Client, url string) (Families, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return Parse(resp.Body)
}

// Value is the value of the sample of family name whose labels are
// exactly labels (name, value pairs), and whether there is one: a gauge's
// or counter's value, a histogram's count.
func (f Families) Value(name string, labels ...string) (float64, bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// Verify compares the terrane_* families of a scrape with the catalogue:
// each must be defined (All) for where ("server" or "agent"), with its
// type and its labels. It returns one message per difference, sorted.
func Verify(f Families, where string) []string {
	var out []string
	for name, fam := range f {
		if !strings.HasPrefix(name, "terrane_") {
			continue
		}
		d, ok := Lookup(name)
		if !ok {
			out = append(out, fmt.Sprintf("%s is exposed but not in the catalogue (internal/metrics/catalog.go)", name))
			continue
		}
		if d.Where != where {
			out = append(out, fmt.Sprintf("%s is exposed by the %s, the catalogue says the %s", name, where, d.Where))
		}
		if got := strings.ToLower(fam.GetType().String()); got != string(d.Type) {
			out = append(out, fmt.Sprintf("%s is a %s, the catalogue says %s", name, got, d.Type))
		}
		want := slices.Sorted(slices.Values(d.Labels))
		for _, m := range fam.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "le" {
					got = append(got, lp.GetName())
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				out = append(out, fmt.Sprintf("%s has labels %v, the catalogue says %v", name, got, want))
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// Missing are the catalogue's metrics for where that f lacks.
func Missing(f Families, where string) []string {
	var out []string
	for _, d := range All {
		if d.Where == where && f[d.Name] == nil {
			out = append(out, d.Name)
		}
	}
	return out
}
