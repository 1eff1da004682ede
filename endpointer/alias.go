package endpointer

// aliasTable draws an index with probability proportional to its weight in
// constant time (Vose's alias method).
type aliasTable struct {
	// threshold[i] is the chance, scaled to 2^32, of keeping i rather than
	// taking alias[i].
	threshold []uint64
	alias     []uint32
}

// newAliasTable builds the table for weights, all > 0. Building it costs
// O(len(weights)); a Weighted group rebuilds one per block it changes and
// the one over its blocks, never one over all its candidates.
func newAliasTable(weights []uint64) *aliasTable {
	n := len(weights)
	t := &aliasTable{threshold: make([]uint64, n), alias: make([]uint32, n)}
	var total float64
	for _, w := range weights {
		total += float64(w)
	}
	scaled := make([]float64, n)
	small := make([]int, 0, n)
	large := make([]int, 0, n)
	for i, w := range weights {
		scaled[i] = float64(w) * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		t.threshold[s] = uint64(scaled[s] * (1 << 32))
		t.alias[s] = uint32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left has probability 1 up to rounding.
	for _, i := range append(small, large...) {
		t.threshold[i] = 1 << 32
		t.alias[i] = uint32(i)
	}
	return t
}

// pick maps 64 random bits to an index: the low half chooses a column, the
// high half decides between the column and its alias.
func (t *aliasTable) pick(x uint64) uint64 {
	i := bounded(uint32(x), uint64(len(t.threshold)))
	if x>>32 < t.threshold[i] {
		return i
	}
	return uint64(t.alias[i])
}
