// Package history checks every consumer of etcdsd's pipeline against etcd's
// own history of the prefix: an independent raw watch records the state at
// every revision, and each state a consumer delivers (the Instancer's
// sd.Events, its Feed, the endpointer's routable set, the gRPC resolver's
// states, catalog.Watch's events) must be etcd's state at some revision, never
// older than the one it delivered before, and, once writes stop, the final
// one. Scenarios are random with a printed seed: ETCDSD_HISTORY_SEED replays
// one, ETCDSD_HISTORY_DURATION runs them in a loop that long, with a new
// seed each round:
//
//	ETCDSD_HISTORY_DURATION=30m go test -race -count=1 -timeout 40m -run TestHistory ./integration/history/
//
// The summary line at the end counts the events recorded, the states
// checked per consumer, the faults injected and the violations found.
//
// It holds tests only.
package history
