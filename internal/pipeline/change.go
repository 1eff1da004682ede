// Package pipeline is etcdsd's one discovery pipeline, from an etcd watch to
// the consumers that apply its changes: a Mirror reads a prefix at revision
// R, watches from R+1, resumes the watch after an outage and reads a fresh
// snapshot only after compaction; a Feed holds the instances it found, each value parsed once, and
// fans the typed changes out to coalescing Subscriptions, synchronous
// observers and go-kit sd.Event channels. Share gives the consumers of one
// client, prefix and source kind one Mirror: each follows it with a Feed of
// its own (its parser, filter, observer), filled from the Mirror's memory
// when it joins late.
//
// Every consumer of etcdsd is built on it: etcdv3.Instancer, endpointer,
// grpcsd's resolver and pool, catalog's Watch and Instancer, and the CLI.
package pipeline

import "time"

import (
	"fmt"

	"github.com/etcdsd/etcdsd/instance"
)

// Op says what happened to a key: it was put (created or modified) or
// deleted.
type Op uint8

// The operations of a Change.
const (
	Put Op = iota + 1
	Delete
)

// String returns "put" or "delete".
func (o Op) String() string {
	switch o {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Change is the one change type of etcdsd: a key put or deleted under a
// watched prefix, with its value parsed once.
type Change struct {
	Op  Op
	Key string
	// Value is the key's new value; for Delete, the value it had in the
	// Feed, which in a Subscription's coalesced batch may be one put after
	// what the consumer saw: Prev is what the consumer saw.
	Value string
	// Prev is the value the key had before the change, as the consumer
	// last saw it (a Subscription keeps the first one while it coalesces);
	// empty when the key was absent. Consumers that keep state by value
	// need no map by key to find what a change replaces.
	Prev string
	// Instance is Value parsed by the Feed's parser.
	Instance instance.Instance
	// Rev is the etcd revision of the change. A change found by a resync
	// carries the key's ModRevision, or for a delete the snapshot's
	// revision.
	Rev int64
}

// Batch is what a consumer receives at once: the changes of one watch
// response or one resync, or, for a Subscription, everything that arrived
// since it last took a batch, coalesced by key.
type Batch struct {
	// Rev is the etcd revision the Feed reflects after this batch.
	Rev int64
	// Changes are in revision order. A Subscription's batch holds at most
	// one change per key (in no order a consumer may rely on); an
	// observer's batch is one watch response, which, catching up over many
	// revisions, may change a key more than once: apply it in order.
	Changes []Change
	// Reset says Changes (all of them Puts) are the whole content: the
	// consumer drops every key it has that they do not name. A
	// Subscription's first batch is a reset.
	Reset bool
	// Resync says the changes were found by comparing a fresh snapshot
	// with the Feed's content (after compaction, or a first read that
	// failed): they are
	// the net difference, so changes made and undone while the watch was
	// cut off are not seen, and several changes of one key count as one.
	Resync bool
	// Err is set while etcd cannot be read: the Feed keeps its content and
	// the Mirror resumes with backoff. A later batch without Err clears it
	// and brings the true state: the Mirror holds back what a resumed
	// watch brings until it has caught up.
	Err error
	// At is when the Feed took the changes in (a watch response, a
	// snapshot); a coalesced batch keeps the earliest, so that a consumer
	// can tell how long a change took to reach it.
	At time.Time
}
