package main

import (
	"slices"
	"time"
)

// Stat summarises the samples of one measure.
type Stat struct {
	Min, Med, Max float64
	N             int
}

// summarize returns min, median and max of xs (the mean of the middle two
// for an even count).
func summarize(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Min: s[0], Med: med, Max: s[n-1], N: n}
}

// ms converts a duration to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Samples collects named series of values in the order they were first seen.
type Samples struct {
	order []string
	vals  map[string][]float64
}

func newSamples() *Samples { return &Samples{vals: map[string][]float64{}} }

// Add appends v to the series name.
func (s *Samples) Add(name string, v float64) {
	if _, ok := s.vals[name]; !ok {
		s.order = append(s.order, name)
	}
	s.vals[name] = append(s.vals[name], v)
}

// Stat summarises the series name (N is 0 when it has no samples).
func (s *Samples) Stat(name string) Stat { return summarize(s.vals[name]) }
