package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/etcdsd/etcdsd/catalog"
)

// noServiceError reports that a service named on the command line has no
// instance under the root.
type noServiceError struct{ service, root string }

func (e noServiceError) Error() string {
	return fmt.Sprintf("no service %q under %s", e.service, e.root)
}

// getService returns the instances of a service that has at least one, and
// otherwise a noServiceError. A bad name is a usage error.
func getService(ctx context.Context, cat *catalog.Catalog, service string) ([]catalog.Instance, error) {
	instances, err := cat.GetService(ctx, service)
	if errors.Is(err, catalog.ErrBadName) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	if len(instances) == 0 {
		return nil, noServiceError{service: service, root: cat.Root()}
	}
	return instances, nil
}
