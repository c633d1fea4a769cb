package labbench

import (
	"math"
	"math/rand/v2"
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
	// CI95 is the 95% confidence interval of Ratio, when it has one.
	CI95 *[2]float64 `json:"ci95,omitempty"`
	// Unit is what Ratio and Want count when they are not a ratio ("s").
	Unit string `json:"unit,omitempty"`
}

func atMost(name string, r, want float64) Goal {
	return Goal{Name: name, Ratio: r, Want: want, AtMost: true, Met: r > 0 && r <= want}
}

func atLeast(name string, r, want float64) Goal {
	return Goal{Name: name, Ratio: r, Want: want, Met: r >= want}
}

// atLeastCI is atLeast for a median with its confidence interval: met is
// still judged on the median.
func atLeastCI(name string, s RatioStats, want float64) Goal {
	g := atLeast(name, s.Median, want)
	ci := s.CI95
	g.CI95 = &ci
	return g
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

// Bootstrap parameters of the confidence intervals: enough resamples for
// the 2.5 and 97.5 percentiles to be stable, and a fixed seed so the same
// data always give the same interval.
const (
	bootstrapResamples = 2000
	bootstrapSeed      = 0x7e77a9e
)

// RatioStats summarises a ratio measured once per round.
type RatioStats struct {
	// Median of Rounds and a 95% bootstrap confidence interval of that
	// median ([lo, hi]).
	Median float64    `json:"median"`
	CI95   [2]float64 `json:"ci95"`
	Rounds []float64  `json:"rounds"`
}

// ratioStats is the median of xs with its 95% bootstrap CI.
func ratioStats(xs []float64) RatioStats {
	lo, hi := bootstrapMedianCI(xs, bootstrapResamples, bootstrapSeed)
	return RatioStats{Median: median(xs), CI95: [2]float64{lo, hi}, Rounds: slices.Clone(xs)}
}

// bootstrapMedianCI is the 95% percentile-bootstrap confidence interval of
// the median of xs: n resamples of len(xs) values drawn with replacement,
// the 2.5th and 97.5th percentiles (nearest rank) of their medians. xs is
// sorted first, so the interval depends on the values only, not on their
// order; the seed makes it reproducible. (0, 0) when xs is empty.
func bootstrapMedianCI(xs []float64, n int, seed uint64) (lo, hi float64) {
	if len(xs) == 0 || n < 1 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	meds := make([]float64, n)
	buf := make([]float64, len(s))
	for i := range meds {
		for j := range buf {
			buf[j] = s[rng.IntN(len(s))]
		}
		meds[i] = median(buf)
	}
	slices.Sort(meds)
	return percentile(meds, 0.025), percentile(meds, 0.975)
}

// percentile is the q-quantile of sorted s by nearest rank.
func percentile(s []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
