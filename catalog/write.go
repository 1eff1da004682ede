package catalog

import (
	"context"
	"fmt"
)

// SetProperty stores an operator's property of one instance, or of every
// instance of the service when id is empty. value is JSON: "true"/"false"
// for PropDisabled, an integer in [1, instance.MaxWeight] for PropWeight,
// anything for other names. The property outlives the instance's process
// and registration; ClearProperty removes it. Without a deadline on ctx it
// gives up after etcdv3.DefaultRequestTimeout.
func (c *Catalog) SetProperty(ctx context.Context, service, id, name, value string) error {
	if err := checkProperty(service, id, name, value); err != nil {
		return fmt.Errorf("catalog: set property: %w", err)
	}
	key := c.layout.propertyKey(service, id, name)
	ctx, cancel := bound(ctx)
	defer cancel()
	if _, err := c.client.EtcdClient().Put(ctx, key, value); err != nil {
		return fmt.Errorf("catalog: set property %q: %w", key, err)
	}
	return nil
}

// ClearProperty removes a property set by SetProperty. Clearing a property
// that is not set is not an error.
func (c *Catalog) ClearProperty(ctx context.Context, service, id, name string) error {
	if err := checkRef(service, id, name); err != nil {
		return fmt.Errorf("catalog: clear property: %w", err)
	}
	key := c.layout.propertyKey(service, id, name)
	ctx, cancel := bound(ctx)
	defer cancel()
	if _, err := c.client.EtcdClient().Delete(ctx, key); err != nil {
		return fmt.Errorf("catalog: clear property %q: %w", key, err)
	}
	return nil
}
