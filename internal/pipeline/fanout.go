package pipeline

import (
	"slices"

	"github.com/go-kit/kit/sd"
)

// fanout publishes a Feed's content as go-kit sd.Events: the distinct
// values, sorted. The list is kept only while a channel is registered, and
// built only when a subscriber is about to be sent it: changes that arrive
// faster than the subscribers read are folded into one build. A build
// merges the values that appeared and disappeared into the last list, in
// one pass (no re-read, no re-sort), and the list it makes goes to every
// subscriber. Each list is immutable, because subscribers may keep it. The
// Feed's lock guards a fanout.
type fanout struct {
	subs   map[chan<- sd.Event]*subscriber
	counts map[string]int // value → keys holding it; nil when not kept
	net    map[string]int // since the last build, per value: +1 appeared, -1 went
	err    error          // the Feed's error, as of the last publish
	state  sd.Event       // the last built state
	seq    uint64         // number of the last built state
	done   bool
}

func (o *fanout) init() {
	o.subs = make(map[chan<- sd.Event]*subscriber)
}

func (o *fanout) kept() bool { return o.counts != nil }

// swap records that one key stopped holding old (if hadOld) and now holds
// new (if hasNew).
func (o *fanout) swap(old string, hadOld bool, new string, hasNew bool) {
	if o.counts == nil || (hadOld && hasNew && old == new) {
		return
	}
	if hadOld {
		if o.counts[old]--; o.counts[old] == 0 {
			delete(o.counts, old)
			o.note(old, -1)
		}
	}
	if hasNew {
		if o.counts[new]++; o.counts[new] == 1 {
			o.note(new, +1)
		}
	}
}

// note adds d to the pending effect on v; a value that went and came back
// since the last build leaves no trace.
func (o *fanout) note(v string, d int) {
	if o.net == nil {
		o.net = make(map[string]int)
	}
	if o.net[v] += d; o.net[v] == 0 {
		delete(o.net, v)
	}
}

// publish records the Feed's error and wakes the subscribers if what they
// would be sent may have changed.
func (o *fanout) publish(err error) {
	if o.counts == nil {
		return
	}
	o.err = err
	if len(o.net) == 0 && sameErr(o.state.Err, err) {
		return
	}
	for _, s := range o.subs {
		s.wakeUp()
	}
}

// current builds the state if something changed since the last build and
// returns it with its number, which changes only when the state does.
func (o *fanout) current() (sd.Event, uint64) {
	if len(o.net) == 0 && sameErr(o.state.Err, o.err) {
		return o.state, o.seq
	}
	var adds, removes []string
	for v, d := range o.net {
		if d > 0 {
			adds = append(adds, v)
		} else {
			removes = append(removes, v)
		}
	}
	o.net = nil
	slices.Sort(adds)
	slices.Sort(removes)
	list := o.state.Instances
	if len(adds) > 0 || len(removes) > 0 {
		list = merge(list, removes, adds)
	}
	o.state = sd.Event{Instances: list, Err: o.err}
	o.seq++
	return o.state, o.seq
}

// register adds ch, starting to keep the list from values (every key's
// value, with repeats) if it was not kept. It returns the wait for the
// new subscriber's first state, or, if ch was registered already, for the
// current state sent to it again; nil once delivery has stopped. get must
// return current() under the Feed's lock.
func (o *fanout) register(ch chan<- sd.Event, values func() []string, err error, get func() (sd.Event, uint64)) (wait func()) {
	if o.done {
		return nil
	}
	if s, ok := o.subs[ch]; ok {
		return s.resend()
	}
	if o.counts == nil {
		vs := values()
		o.counts = make(map[string]int, len(vs))
		for _, v := range vs {
			o.counts[v]++
		}
		list := make([]string, 0, len(o.counts))
		for v := range o.counts {
			list = append(list, v)
		}
		slices.Sort(list)
		o.err = err
		o.state = sd.Event{Instances: list, Err: err}
		o.seq++
	}
	s := newSubscriber(ch, get)
	o.subs[ch] = s
	return s.waitFirst
}

// deregister removes ch and, with the last channel, stops keeping the list.
func (o *fanout) deregister(ch chan<- sd.Event) *subscriber {
	s, ok := o.subs[ch]
	if !ok {
		return nil
	}
	delete(o.subs, ch)
	if len(o.subs) == 0 {
		o.counts, o.net, o.state, o.err = nil, nil, sd.Event{}, nil
	}
	return s
}

// stop forgets every subscriber and returns them, to be stopped outside
// the lock; later registrations are ignored.
func (o *fanout) stop() []*subscriber {
	o.done = true
	subs := make([]*subscriber, 0, len(o.subs))
	for _, s := range o.subs {
		subs = append(subs, s)
	}
	clear(o.subs)
	return subs
}

// merge returns a new sorted slice: old without removes, plus adds. removes
// are all in old and adds none of them; both are sorted. Runs of old are
// copied whole, so the cost is one pass of memory moves.
func merge(old, removes, adds []string) []string {
	out := make([]string, 0, len(old)-len(removes)+len(adds))
	i := 0 // next element of old to copy
	for len(removes) > 0 || len(adds) > 0 {
		if len(adds) == 0 || (len(removes) > 0 && removes[0] < adds[0]) {
			j, _ := slices.BinarySearch(old[i:], removes[0])
			out = append(out, old[i:i+j]...)
			i += j + 1 // skip the removed value
			removes = removes[1:]
			continue
		}
		j, _ := slices.BinarySearch(old[i:], adds[0])
		out = append(out, old[i:i+j]...)
		out = append(out, adds[0])
		i += j
		adds = adds[1:]
	}
	return append(out, old[i:]...)
}

func sameErr(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return a == nil || a.Error() == b.Error()
}
