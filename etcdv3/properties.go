package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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

// followProperties starts the mirror of the properties under propsPrefix
// into ov. A client whose role may not read them (etcd auth limited to the
// instances' prefix) gets the instances as registered, with a warning.
// start is pipeline.Start, or pipeline.StartRetrying for an Instancer
// that may start before etcd answers: its mirror then keeps reading.
func followProperties(ctx context.Context, start startFunc, c Client, ov *property.Overlay, propsPrefix string, logger log.Logger, minBackoff, maxBackoff time.Duration) (*pipeline.Mirror, error) {
	m, err := start(ctx, source(c, propsPrefix), ov.Properties(), logger, minBackoff, maxBackoff)
	if errors.Is(err, rpctypes.ErrPermissionDenied) {
		if m != nil {
			m.Stop()
		}
		level.Warn(logger).Log("msg", "cannot read the operator's properties; drains and weight overrides are not honoured", "properties", propsPrefix, "err", err)
		ov.WithoutProperties()
		return nil, nil
	}
	if err != nil && m == nil {
		return nil, fmt.Errorf("etcdv3: instancer: read the operator's properties: %w", err)
	}
	return m, nil
}

// startFunc is the signature of pipeline.Start and pipeline.StartRetrying.
type startFunc = func(context.Context, pipeline.Source, *pipeline.Feed, log.Logger, time.Duration, time.Duration) (*pipeline.Mirror, error)

func init() {
	property.ClientRoot = func(client any) string {
		if ec, ok := client.(*EtcdClient); ok {
			return ec.opts.PropertiesRoot
		}
		return ""
	}
}
