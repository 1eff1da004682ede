package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
)

// runRegister puts a key under a lease, keeps it alive until interrupted,
// then deletes it.
func runRegister(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("register",
		"Register a key under a lease and keep it alive until interrupted (Ctrl-C or SIGTERM),\nthen deregister it. The lease is granted again and the key put back if it is lost.\nHere --key is the etcd key; give a TLS client key with --tls-key.")
	f := addCommonFlags(fs, false)
	var key, value string
	var ttl time.Duration
	fs.StringVar(&key, "key", "", "etcd key to register, e.g. /services/app/app-1 (required)")
	fs.StringVar(&value, "value", "", `value: an address or instance JSON such as {"address":"10.0.0.1:80"} (required)`)
	fs.DurationVar(&ttl, "ttl", etcdv3.DefaultTTL, "lease time to live (at least 2s); a heartbeat is sent every ttl/3")
	if _, err := parseArgs(fs, args, 0, 0, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	switch {
	case key == "":
		return usageError{errors.New("--key is required")}
	case value == "":
		return usageError{errors.New("--value is required")}
	case ttl < 2*time.Second:
		return usageError{fmt.Errorf("--ttl %v: must be at least 2s", ttl)}
	}
	if err := etcdv3.ValidateKey(key); err != nil {
		return usageError{fmt.Errorf("--key %q: %w", key, err)}
	}
	// Refused before connecting, as the Registrar would refuse it.
	if _, err := instance.Parse(value); err != nil {
		return usageError{fmt.Errorf("--value: %w", err)}
	}
	// The client must outlive the interrupt to deregister: a client ends
	// with the context it was made with.
	c, err := f.connect(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	defer c.Close()
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: value, TTL: etcdv3.NewTTLOption(ttl/3, ttl)}, nil)
	rctx, cancel := f.requestContext(ctx)
	err = reg.RegisterContext(rctx)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "registered %s (lease %016x, ttl %v); Ctrl-C to deregister\n", key, reg.Status().LeaseID, ttl)
	<-ctx.Done()
	dctx, cancel := f.requestContext(context.WithoutCancel(ctx))
	defer cancel()
	if err := reg.DeregisterContext(dctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deregistered %s\n", key)
	return nil
}
