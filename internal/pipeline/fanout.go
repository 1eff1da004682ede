package pipeline

import (
	"slices"

	"github.com/go-kit/kit/sd"
)

// fanout publishes a Feed's content as go-kit sd.Events: the distinct
// values, sorted. The list is kept only while a channel is registered;
// then each batch edits it by merging the values that appeared and
// disappeared into the last list, in one pass (no re-read, no re-sort).
// Each published list is immutable, because subscribers may keep it. The
// Feed's lock guards it.
type fanout struct {
	subs   map[chan<- sd.Event]*subscriber
	counts map[string]int // value → keys holding it; nil when not kept
	net    map[string]int // the batch's effect per value: +1 appears, -1 goes
	state  sd.Event       // the last published state, while kept
	seq    uint64         // number of the last published state
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
	if o.net == nil {
		o.net = make(map[string]int)
	}
	if hadOld {
		if o.counts[old]--; o.counts[old] == 0 {
			delete(o.counts, old)
			o.net[old]--
		}
	}
	if hasNew {
		if o.counts[new]++; o.counts[new] == 1 {
			o.net[new]++
		}
	}
}

// publish sends the state after the swaps since the last publish, with
// err, if a subscriber can see a difference.
func (o *fanout) publish(err error) {
	if o.counts == nil {
		return
	}
	var adds, removes []string
	for v, d := range o.net {
		switch {
		case d > 0:
			adds = append(adds, v)
		case d < 0:
			removes = append(removes, v)
		}
	}
	o.net = nil
	list := o.state.Instances
	if len(adds) > 0 || len(removes) > 0 {
		slices.Sort(adds)
		slices.Sort(removes)
		list = merge(list, removes, adds)
	} else if sameErr(o.state.Err, err) {
		return
	}
	o.state = sd.Event{Instances: list, Err: err}
	o.seq++
	for _, s := range o.subs {
		s.offer(o.state, o.seq)
	}
}

// register adds ch, starting to keep the list from values (every key's
// value, with repeats) if it was not kept. It returns the new subscriber,
// nil if ch was registered already or delivery has stopped.
func (o *fanout) register(ch chan<- sd.Event, values func() []string, err error) *subscriber {
	if o.done {
		return nil
	}
	if _, ok := o.subs[ch]; ok {
		return nil
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
		o.state = sd.Event{Instances: list, Err: err}
		o.seq++
	}
	s := newSubscriber(ch, o.state, o.seq)
	o.subs[ch] = s
	return s
}

// deregister removes ch and, with the last channel, stops keeping the list.
func (o *fanout) deregister(ch chan<- sd.Event) *subscriber {
	s, ok := o.subs[ch]
	if !ok {
		return nil
	}
	delete(o.subs, ch)
	if len(o.subs) == 0 {
		o.counts, o.net, o.state = nil, nil, sd.Event{}
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

func sameEvent(a, b sd.Event) bool {
	return sameErr(a.Err, b.Err) && slices.Equal(a.Instances, b.Instances)
}
