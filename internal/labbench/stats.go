package labbench

import (
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Latency summarises one operation's samples, in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Mean float64 `json:"mean_ms"`
	Min  float64 `json:"min_ms"`
	Max  float64 `json:"max_ms"`
}

// summarise computes the quantiles (nearest rank) of ds.
func summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{
		N:    len(s),
		P50:  ms(quantile(s, 0.50)),
		P90:  ms(quantile(s, 0.90)),
		P99:  ms(quantile(s, 0.99)),
		Mean: ms(sum / time.Duration(len(s))),
		Min:  ms(s[0]),
		Max:  ms(s[len(s)-1]),
	}
}

// quantile is the q-quantile of sorted s by nearest rank.
func quantile(s []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// median of xs (the mean of the middle two when even); 0 when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Goal is one target of the issue, checked against a measured ratio.
type Goal struct {
	Name string `json:"name"`
	// Ratio is the measured value; Met says whether it is on the right
	// side of Want (at most Want when AtMost, else at least).
	Ratio  float64 `json:"ratio"`
	Want   float64 `json:"want"`
	AtMost bool    `json:"at_most"`
	Met    bool    `json:"met"`
}

func atMost(name string, r, want float64) Goal {
	return Goal{Name: name, Ratio: r, Want: want, AtMost: true, Met: r > 0 && r <= want}
}

func atLeast(name string, r, want float64) Goal {
	return Goal{Name: name, Ratio: r, Want: want, Met: r >= want}
}

// Machine is where a benchmark ran.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Time   string `json:"time"`
}

func thisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Time: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	return m
}
