package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// propertiesPrefix returns where the operator's properties of the
// instances under prefix live, and whether c reads them: only the client
// NewClient returns has keys to match them with.
func propertiesPrefix(c Client, prefix string) (string, bool) {
	if _, ok := c.(*EtcdClient); !ok {
		return "", false
	}
	root, on := property.Resolve("")
	return property.Prefix(root, prefix), on
}

// followProperties starts the mirror of the properties under propsPrefix
// into ov. A client whose role may not read them (etcd auth limited to the
// instances' prefix) gets the instances as registered, with a warning.
func followProperties(ctx context.Context, c Client, ov *property.Overlay, propsPrefix string, logger log.Logger, minBackoff, maxBackoff time.Duration) (*pipeline.Mirror, error) {
	m, err := pipeline.Start(ctx, source(c, propsPrefix), ov.Properties(), logger, minBackoff, maxBackoff)
	if errors.Is(err, rpctypes.ErrPermissionDenied) {
		level.Warn(logger).Log("msg", "cannot read the operator's properties; drains and weight overrides are not honoured", "properties", propsPrefix, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("etcdv3: instancer: read the operator's properties: %w", err)
	}
	return m, nil
}
