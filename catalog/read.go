package catalog

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/go-kit/log/level"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdv3"
)

// listPage is the number of keys ListServices reads per request, so that
// a huge catalog never makes one huge response.
const listPage = 5000

// ServiceInfo is one service as ListServices sees it.
type ServiceInfo struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"`
}

// bound gives ctx the default request timeout when it has no deadline, so
// that no call waits forever for an unreachable etcd.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, etcdv3.DefaultRequestTimeout)
}

// ListServices returns every service that has at least one instance, with
// its number of instances, sorted by name. It reads keys only (no values),
// in pages of a few thousand keys, all at one revision: the heavy call a
// program makes once at start, then follows with Watch. Without a deadline
// on ctx it gives up after etcdv3.DefaultRequestTimeout.
func (c *Catalog) ListServices(ctx context.Context) ([]ServiceInfo, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	cli := c.client.EtcdClient()
	end := clientv3.GetPrefixRangeEnd(c.layout.root)
	from := c.layout.root
	var rev int64
	counts := map[string]int{}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("catalog: list services under %q: %w", c.layout.root, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if service, _, ok := c.layout.parseInstanceKey(string(kv.Key)); ok {
				counts[service]++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	out := make([]ServiceInfo, 0, len(counts))
	for name, n := range counts {
		out = append(out, ServiceInfo{Name: name, Instances: n})
	}
	slices.SortFunc(out, func(a, b ServiceInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// GetService returns the instances of one service, sorted by id, as
// registered (properties not applied; see Effective and Properties).
// Values that do not parse are logged and skipped. Without a deadline on
// ctx it gives up after etcdv3.DefaultRequestTimeout.
func (c *Catalog) GetService(ctx context.Context, name string) ([]Instance, error) {
	if err := checkSegment("service name", name); err != nil {
		return nil, fmt.Errorf("catalog: get service: %w", err)
	}
	return c.Instances(ctx, name+"/")
}

// Instances returns the instances of every service whose name starts with
// namePrefix (all services when it is empty), sorted by service and id.
// Use GetService for one service: the prefix "app" also matches "apple".
func (c *Catalog) Instances(ctx context.Context, namePrefix string) ([]Instance, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	prefix := c.layout.root + namePrefix
	resp, err := c.client.EtcdClient().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("catalog: read instances under %q: %w", prefix, err)
	}
	out := make([]Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		inst, err := c.layout.decodeInstance(string(kv.Key), string(kv.Value))
		if err != nil {
			level.Warn(c.logger).Log("msg", "skipping malformed instance", "err", err)
			continue
		}
		out = append(out, inst)
	}
	// etcd returns key order, which is not service order when a name holds
	// a byte below '/' ("app-1" comes before "app/").
	slices.SortStableFunc(out, func(a, b Instance) int {
		if n := strings.Compare(a.Name, b.Name); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Properties returns the properties of one service (of every service when
// service is empty), sorted by service, id (service-wide first) and name.
// Malformed ones are logged and skipped.
func (c *Catalog) Properties(ctx context.Context, service string) ([]Property, error) {
	prefix := c.layout.props
	if service != "" {
		if err := checkSegment("service name", service); err != nil {
			return nil, fmt.Errorf("catalog: properties: %w", err)
		}
		prefix = c.layout.propsPrefix(service)
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	resp, err := c.client.EtcdClient().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("catalog: read properties under %q: %w", prefix, err)
	}
	out := make([]Property, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := c.layout.decodeProperty(string(kv.Key), string(kv.Value))
		if err != nil {
			level.Warn(c.logger).Log("msg", "skipping malformed property", "err", err)
			continue
		}
		out = append(out, p)
	}
	slices.SortStableFunc(out, func(a, b Property) int {
		if n := strings.Compare(a.Service, b.Service); n != 0 {
			return n
		}
		if n := strings.Compare(a.ID, b.ID); n != 0 {
			return n
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}
