package endpointer

import "sync/atomic"

// rng is a goroutine-safe, lock-free SplitMix64 generator: every call adds
// the golden gamma to a shared state with one atomic add and mixes the
// result, so concurrent callers never share a stateful generator the way
// go-kit's lb.NewRandom shares a *rand.Rand.
type rng struct {
	state atomic.Uint64
}

func newRNG(seed uint64) *rng {
	r := &rng{}
	r.state.Store(seed)
	return r
}

// next returns the next pseudo-random 64-bit value.
func (r *rng) next() uint64 {
	return mix64(r.state.Add(0x9e3779b97f4a7c15))
}

// mix64 is the SplitMix64 finaliser: a bijection that spreads every input
// bit over the output.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// bounded maps 32 random bits to [0, n) by multiplication (Lemire), without
// a division; n must be below 2^32.
func bounded(x uint32, n uint64) uint64 {
	return (uint64(x) * n) >> 32
}
