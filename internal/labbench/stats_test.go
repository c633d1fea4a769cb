package labbench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestSummarise(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarise(ds)
	want := Latency{N: 100, P50: 50, P90: 90, P99: 99, Mean: 50.5, Min: 1, Max: 100}
	if got != want {
		t.Errorf("summarise(1..100 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("summarise sorted its input")
	}
	if got := summarise(nil); got != (Latency{}) {
		t.Errorf("summarise(nil) = %+v", got)
	}
	if got := summarise([]time.Duration{3 * time.Millisecond}); got.P50 != 3 || got.P99 != 3 {
		t.Errorf("one sample: %+v", got)
	}
}

func TestMedianRatio(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	if ratio(1, 0) != 0 || ratio(3, 2) != 1.5 {
		t.Error("ratio")
	}
}

func TestGoals(t *testing.T) {
	for _, tc := range []struct {
		g    Goal
		want bool
	}{
		{atMost("x", 1.0, 1.0), true},
		{atMost("x", 1.01, 1.0), false},
		{atMost("x", 0, 1.0), false}, // nothing measured
		{atLeast("x", 0.95, 0.95), true},
		{atLeast("x", 0.94, 0.95), false},
	} {
		if tc.g.Met != tc.want {
			t.Errorf("%+v: met %v, want %v", tc.g, tc.g.Met, tc.want)
		}
	}
}

func TestBootstrapMedianCI(t *testing.T) {
	// A constant sample: every resample has the same median.
	if lo, hi := bootstrapMedianCI([]float64{0.9, 0.9, 0.9, 0.9}, bootstrapResamples, 1); lo != 0.9 || hi != 0.9 {
		t.Errorf("constant sample: CI [%v, %v], want [0.9, 0.9]", lo, hi)
	}
	if lo, hi := bootstrapMedianCI([]float64{2}, bootstrapResamples, 1); lo != 2 || hi != 2 {
		t.Errorf("one value: CI [%v, %v], want [2, 2]", lo, hi)
	}
	if lo, hi := bootstrapMedianCI(nil, bootstrapResamples, 1); lo != 0 || hi != 0 {
		t.Errorf("no values: CI [%v, %v], want [0, 0]", lo, hi)
	}

	// 1..25 shuffled. The bootstrap median of n = 25 distinct values is at
	// most the j-th smallest with probability P(Binomial(25, j/25) ≥ 13):
	// 0.0096 for j = 7, 0.0299 for j = 8, 0.9701 for j = 17, 0.9904 for
	// j = 18; so the 2.5th and 97.5th percentiles are 8 and 18 (the mean's
	// interval would be about [10.2, 15.8]; resampling without replacement
	// would give [13, 13]). 2000 resamples may land one rank off.
	xs := make([]float64, 25)
	for i, v := range []int{13, 2, 25, 7, 19, 1, 11, 22, 5, 16, 9, 24, 3, 14, 20, 8, 17, 6, 23, 10, 4, 21, 12, 18, 15} {
		xs[i] = float64(v)
	}
	orig := slices.Clone(xs)
	lo, hi := bootstrapMedianCI(xs, bootstrapResamples, bootstrapSeed)
	if math.Abs(lo-8) > 1 || math.Abs(hi-18) > 1 {
		t.Errorf("1..25: CI [%v, %v], want about [8, 18]", lo, hi)
	}
	if !slices.Equal(xs, orig) {
		t.Error("bootstrapMedianCI changed its input")
	}
	// Reproducible, and the same for the same values in another order.
	slices.Sort(xs)
	if lo2, hi2 := bootstrapMedianCI(xs, bootstrapResamples, bootstrapSeed); lo2 != lo || hi2 != hi {
		t.Errorf("same values sorted: CI [%v, %v], want [%v, %v]", lo2, hi2, lo, hi)
	}

	// Samples like the benchmark's: the interval holds the median and
	// lies within the sample's range.
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 2 + rng.IntN(15)
		s := make([]float64, n)
		for i := range s {
			s[i] = 0.7 + 0.3*rng.Float64()
		}
		lo, hi := bootstrapMedianCI(s, bootstrapResamples, bootstrapSeed)
		m := median(s)
		if !(slices.Min(s) <= lo && lo <= m && m <= hi && hi <= slices.Max(s)) {
			t.Fatalf("trial %d: %v: CI [%v, %v] does not hold the median %v within the range", trial, s, lo, hi, m)
		}
	}
}

func TestRatioStats(t *testing.T) {
	in := []float64{0.8, 0.9, 0.85}
	r := ratioStats(in)
	if r.Median != 0.85 || !slices.Equal(r.Rounds, in) || r.CI95[0] > 0.85 || r.CI95[1] < 0.85 {
		t.Errorf("ratioStats(%v) = %+v", in, r)
	}
	in[0] = 5
	if r.Rounds[0] != 0.8 {
		t.Error("ratioStats kept its caller's slice")
	}
	b, err := json.Marshal(RatioStats{Median: 1, CI95: [2]float64{0.5, 1.5}, Rounds: []float64{1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"median":1,"ci95":[0.5,1.5],"rounds":[1]}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
}
