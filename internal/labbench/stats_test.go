package labbench

import (
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
