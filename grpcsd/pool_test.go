package grpcsd

import (
	"context"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/etcdv3"
)

// unusedClient fails the test if the Pool reaches etcd.
type unusedClient struct{ t *testing.T }

func (c unusedClient) GetEntries(string) ([]string, error) {
	c.t.Error("GetEntries called")
	return nil, nil
}
func (c unusedClient) WatchPrefix(string, chan struct{}) { c.t.Error("WatchPrefix called") }
func (c unusedClient) Register(etcdv3.Service) error     { return nil }
func (c unusedClient) Deregister(etcdv3.Service) error   { return nil }
func (c unusedClient) LeaseID() int64                    { return 0 }

func TestNewPoolRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := NewPool(ctx, nil, []string{"/a/"}); err == nil || !strings.Contains(err.Error(), "nil etcd client") {
		t.Errorf("nil client: %v", err)
	}
	c := unusedClient{t}
	for _, tc := range []struct {
		prefixes []string
		want     string
	}{
		{nil, "no prefix given"},
		{[]string{""}, `prefix "": no prefix provided`},
		{[]string{"/a/", " /b/"}, `prefix " /b/"`},
		{[]string{"/a/", "/a/"}, `prefixes "/a/" and "/a/" overlap`},
		{[]string{"/backends/", "/backends/agent/"}, `prefixes "/backends/" and "/backends/agent/" overlap`},
	} {
		if _, err := NewPool(ctx, c, tc.prefixes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPool(%q) = %v, want an error containing %q", tc.prefixes, err, tc.want)
		}
	}
}

func TestKeyID(t *testing.T) {
	for _, tc := range []struct{ prefix, key, id string }{
		{"/backends/agent/", "/backends/agent/agent1", "agent1"},
		{"/backends/agent", "/backends/agent/agent1", "agent1"},
		{"/backends/agent/", "/backends/agent/zone-a/agent1", "zone-a/agent1"},
		{"/backends/agent/", "/backends/agent//agent1", "/agent1"},
	} {
		if got := keyID(tc.prefix, tc.key); got != tc.id {
			t.Errorf("keyID(%q, %q) = %q, want %q", tc.prefix, tc.key, got, tc.id)
		}
	}
}
