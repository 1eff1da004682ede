package endpointer

// subsets keeps, for each version, the size members that rank highest for
// the client by rendezvous hashing (score, then value, descending score).
// Costs, for n members of the version:
//   - a member that does not enter the subset, arrives or leaves: O(1)
//     (one hash), or O(size) when it enters and the lowest-ranked leaves;
//   - a value replaced by one of the same identity and version (a weight
//     or metadata change): O(size), in place, never a scan;
//   - a subset member that leaves: O(n), to find the best one outside.
//
// Members of equal score (the same identity under two values) rank by
// value, except that a replacement keeps its predecessor's place.
type subsets struct {
	size      int
	seed      uint64
	byVersion map[string]*versionSubset
	touch     func(*member) // told of each member whose inSubset changes
}

type versionSubset struct {
	in  []ranked // best first
	out map[*member]struct{}
}

type ranked struct {
	score uint64
	m     *member
}

// above reports whether a ranks before b.
func (a ranked) above(b ranked) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.m.value < b.m.value
}

func newSubsets(size int, clientID string, touch func(*member)) *subsets {
	return &subsets{size: size, seed: hashString(fnvOffset, clientID), byVersion: make(map[string]*versionSubset), touch: touch}
}

func (s *subsets) rank(m *member) ranked {
	return ranked{rendezvousScore(s.seed, m.identity()), m}
}

func (s *subsets) add(m *member) {
	vs := s.byVersion[m.version()]
	if vs == nil {
		vs = &versionSubset{out: make(map[*member]struct{})}
		s.byVersion[m.version()] = vs
	}
	r := s.rank(m)
	if len(vs.in) == s.size {
		low := vs.in[len(vs.in)-1]
		if !r.above(low) {
			vs.out[m] = struct{}{}
			return
		}
		vs.in = vs.in[:len(vs.in)-1]
		low.m.inSubset = false
		s.touch(low.m)
		vs.out[low.m] = struct{}{}
	}
	s.insert(vs, r)
}

// insert puts r into vs.in at its rank.
func (s *subsets) insert(vs *versionSubset, r ranked) {
	i := len(vs.in)
	vs.in = append(vs.in, r)
	for ; i > 0 && r.above(vs.in[i-1]); i-- {
		vs.in[i] = vs.in[i-1]
	}
	vs.in[i] = r
	r.m.inSubset = true
	s.touch(r.m)
}

func (s *subsets) remove(m *member) {
	vs := s.byVersion[m.version()]
	if !m.inSubset {
		delete(vs.out, m)
	} else {
		for i, r := range vs.in {
			if r.m == m {
				vs.in = append(vs.in[:i], vs.in[i+1:]...)
				break
			}
		}
		m.inSubset = false
		s.touch(m)
		if len(vs.out) > 0 {
			var best ranked
			for o := range vs.out {
				if r := s.rank(o); best.m == nil || r.above(best) {
					best = r
				}
			}
			delete(vs.out, best.m)
			s.insert(vs, best)
		}
	}
	if len(vs.in) == 0 {
		delete(s.byVersion, m.version())
	}
}

// replace puts next in old's place: same version, same identity, so the
// same score.
func (s *subsets) replace(old, next *member) {
	vs := s.byVersion[old.version()]
	if !old.inSubset {
		delete(vs.out, old)
		vs.out[next] = struct{}{}
		return
	}
	for i := range vs.in {
		if vs.in[i].m == old {
			vs.in[i].m = next
		}
	}
	old.inSubset, next.inSubset = false, true
	s.touch(old)
	s.touch(next)
}

// sameSlot reports whether next can take old's place in the subsets.
func sameSlot(old, next *member) bool {
	return old.version() == next.version() && old.identity() == next.identity()
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// rendezvousScore is the weight of instance id for the client whose hash
// state is seed: FNV-1a over the client ID, a separator and the instance
// ID, then mixed so that every bit of the score depends on every input bit.
func rendezvousScore(seed uint64, id string) uint64 {
	h := (seed ^ 0xff) * fnvPrime
	return mix64(hashString(h, id))
}

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}
