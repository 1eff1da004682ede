package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// source is where a Mirror reads from: the revision fast path of the real
// client, or GetEntries and WatchPrefix of any other Client.
type source interface {
	snapshot(ctx context.Context) (Snapshot, error)
	// watch hands every change after rev to apply until the watch fails
	// (it returns why) or ctx ends.
	watch(ctx context.Context, rev int64, apply func(WatchResponse)) error
}

func (m *Mirror) source() source {
	if w, ok := m.client.(RevisionWatcher); ok {
		timeout := DefaultRequestTimeout
		if ec, ok := m.client.(*EtcdClient); ok {
			timeout = ec.opts.RequestTimeout
		}
		return &revisionSource{w: w, prefix: m.prefix, timeout: timeout}
	}
	return &entriesSource{c: m.client, prefix: m.prefix, state: map[string]bool{}}
}

type revisionSource struct {
	w       RevisionWatcher
	prefix  string
	timeout time.Duration
}

func (s *revisionSource) snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.w.Snapshot(ctx, s.prefix)
}

func (s *revisionSource) watch(ctx context.Context, rev int64, apply func(WatchResponse)) error {
	if ec, ok := s.w.(*EtcdClient); ok {
		return ec.watch(ctx, s.prefix, rev, apply).Err
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := s.w.WatchFrom(ctx, s.prefix, rev)
	defer func() {
		cancel()
		for range ch { // wait for the watcher to let go
		}
	}()
	for resp := range ch {
		if resp.Err != nil {
			return resp.Err
		}
		apply(resp)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// entriesSource serves a Client that has only the go-kit methods. Keys are
// unknown there, so each value stands for its own key, and a counter of
// reads stands for the revision. The goroutine running the client's
// WatchPrefix cannot be stopped through the go-kit interface; as in go-kit,
// it ends when the client's context does.
type entriesSource struct {
	c      Client
	prefix string

	once    sync.Once
	signals chan struct{}
	seq     int64
	state   map[string]bool
}

func (s *entriesSource) read() (Snapshot, error) {
	values, err := s.c.GetEntries(s.prefix)
	if err != nil {
		return Snapshot{}, fmt.Errorf("etcdv3: read prefix %q: %w", s.prefix, err)
	}
	s.seq++
	snap := Snapshot{Revision: s.seq, KVs: make([]KeyValue, 0, len(values))}
	for _, v := range values {
		snap.KVs = append(snap.KVs, KeyValue{Key: v, Value: v, ModRevision: s.seq})
	}
	return snap, nil
}

func (s *entriesSource) snapshot(context.Context) (Snapshot, error) {
	snap, err := s.read()
	if err != nil {
		return snap, err
	}
	s.state = make(map[string]bool, len(snap.KVs))
	for _, kv := range snap.KVs {
		s.state[kv.Key] = true
	}
	return snap, nil
}

func (s *entriesSource) watch(ctx context.Context, _ int64, apply func(WatchResponse)) error {
	s.once.Do(func() {
		s.signals = make(chan struct{}, 1)
		go s.c.WatchPrefix(s.prefix, s.signals)
	})
	for {
		select {
		case <-s.signals:
		case <-ctx.Done():
			return ctx.Err()
		}
		snap, err := s.read()
		if err != nil {
			return err
		}
		fresh := make(map[string]bool, len(snap.KVs))
		resp := WatchResponse{Revision: snap.Revision}
		for _, kv := range snap.KVs {
			fresh[kv.Key] = true
			if !s.state[kv.Key] {
				resp.Events = append(resp.Events, WatchEvent{Type: EventPut, Key: kv.Key, Value: kv.Value, ModRevision: snap.Revision})
			}
		}
		for k := range s.state {
			if !fresh[k] {
				resp.Events = append(resp.Events, WatchEvent{Type: EventDelete, Key: k, ModRevision: snap.Revision})
			}
		}
		s.state = fresh
		apply(resp)
	}
}
