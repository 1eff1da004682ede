package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// checkPropertiesRoot validates ClientOptions.PropertiesRoot.
func checkPropertiesRoot(root string) error {
	if root == "" || root == property.Off {
		return nil
	}
	if err := ValidatePrefix(root); err != nil {
		return fmt.Errorf("etcdv3: properties root %q: %w", root, err)
	}
	if !strings.HasSuffix(root, "/") {
		return fmt.Errorf("etcdv3: properties root %q must end with \"/\" (or be %q to turn properties off)", root, property.Off)
	}
	if root == "/" {
		return fmt.Errorf("etcdv3: properties root %q would mix properties with the instances they concern", root)
	}
	return nil
}

// propertiesPrefix returns where the operator's properties of the
// instances under prefix live, and whether c reads them: only the client
// NewClient returns has keys to match them with, and its options may turn
// them off. It fails for a bad root given to FromClient, which cannot.
func propertiesPrefix(c Client, prefix string) (string, bool, error) {
	ec, ok := c.(*EtcdClient)
	if !ok {
		return "", false, nil
	}
	if err := checkPropertiesRoot(ec.opts.PropertiesRoot); err != nil {
		return "", false, err
	}
	root, on := property.Resolve(ec.opts.PropertiesRoot)
	return property.Prefix(root, prefix), on, nil
}

// propertiesSource reads the properties of an Instancer's instances. A
// client whose role may not read them (etcd auth limited to the instances'
// prefix) learns it from the first read etcd answers, whether at
// NewInstancer or, for an Instancer started while etcd was unreachable,
// later: that read counts as no properties, with one error logged, so that
// the overlay, which hides the instances until the properties are read,
// serves them as registered. The source then reads no more: a fleet whose
// role lacks the properties would otherwise ask etcd again every few
// seconds for as long as it runs (a role granted later takes effect at the
// next start).
//
// Snapshot and Watch are called by one goroutine at a time (the caller of
// Start, then the mirror's), one after the other.
type propertiesSource struct {
	pipeline.Source
	prefix  string
	logger  log.Logger
	read    bool // etcd has answered a read: a refusal now is an outage like any other
	refused bool // etcd refused the first read: Watch waits for the end
}

// Snapshot implements pipeline.Source.
func (s *propertiesSource) Snapshot(ctx context.Context) (int64, []pipeline.KV, error) {
	rev, kvs, err := s.Source.Snapshot(ctx)
	if s.read || !errors.Is(err, rpctypes.ErrPermissionDenied) {
		s.read = s.read || err == nil
		return rev, kvs, err
	}
	s.read, s.refused = true, true
	level.Error(s.logger).Log("msg", "cannot read the operator's properties: etcd refuses this client's role; serving the instances as registered, without drains or weight overrides, until restarted with a role that may read them", "properties", s.prefix, "err", err)
	return 0, nil, nil
}

// Watch implements pipeline.Source.
func (s *propertiesSource) Watch(ctx context.Context, rev int64, apply func(pipeline.WatchResponse)) error {
	if s.refused {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Source.Watch(ctx, rev, apply)
}

func init() {
	property.ClientRoot = func(client any) string {
		if ec, ok := client.(*EtcdClient); ok {
			return ec.opts.PropertiesRoot
		}
		return ""
	}
}
