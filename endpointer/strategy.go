package endpointer

import "fmt"

// Strategy is how an Endpointer chooses among the candidate instances of a
// request.
type Strategy int

const (
	// RoundRobin takes the candidates in turn (the default). Each candidate
	// group keeps its own counter, which starts at a random offset so that
	// clients do not all begin with the same instance after a change.
	RoundRobin Strategy = iota
	// Random takes a candidate uniformly at random, from a lock-free
	// generator that is safe for any number of goroutines.
	Random
	// LeastLoaded takes two candidates at random and uses the one with fewer
	// calls in flight through this Endpointer (power of two choices).
	LeastLoaded
	// Weighted takes a candidate at random in proportion to the weight in
	// its value (instance.Instance.EffectiveWeight: 1 when unset), in
	// constant time through an alias table over blocks of candidates and
	// one within each block, O(sqrt n) to update per change.
	Weighted
)

// String returns the strategy's name.
func (s Strategy) String() string {
	switch s {
	case RoundRobin:
		return "round-robin"
	case Random:
		return "random"
	case LeastLoaded:
		return "least-loaded"
	case Weighted:
		return "weighted"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

func (s Strategy) valid() bool {
	return s >= RoundRobin && s <= Weighted
}
