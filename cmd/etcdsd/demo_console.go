package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
)

// demoRoot is the catalog root of the demo's HTTP services: demoPrefix is
// the greeter service under it.
const demoRoot = "/etcdsd-demo/services/"

// defaultLinger is how long demo --console keeps serving after the demo.
const defaultLinger = time.Minute

// demoConsole is the web console that demo --console serves.
type demoConsole struct {
	srv    *console.Server
	cancel context.CancelFunc
	served chan error
}

// startConsole serves the console of the demo's services, writes allowed,
// on a free loopback port, and says where.
func (d *demo) startConsole(ctx context.Context) error {
	client, err := d.newClient(ctx)
	if err != nil {
		return err
	}
	cat, err := catalog.New(client, catalog.WithRoot(demoRoot))
	if err != nil {
		return err
	}
	token, err := console.NewToken()
	if err != nil {
		return err
	}
	l, err := console.Listen("127.0.0.1:0", false, false)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx)) // until cleanup, past the demo's deadline
	srv, err := console.New(sctx, console.Config{Catalog: cat, Client: client, AllowWrites: true, Token: token, Endpoints: d.endpoints})
	if err != nil {
		cancel()
		l.Close()
		return err
	}
	c := &demoConsole{srv: srv, cancel: cancel, served: make(chan error, 1)}
	go func() { c.served <- srv.Serve(sctx, l, "", "") }()
	d.console = c
	d.say("Console: %s#token=%s", consoleURL(l.Addr(), false), token)
	d.say("Open it to watch the registrations live; later, drain a greeter there and watch the traffic move.")
	return nil
}

// lingerConsole keeps the console open for d.linger (or until
// interrupted), narrating where traffic goes every second, so that a drain
// or a weight clicked in the console shows in the narration.
func (d *demo) lingerConsole(ctx context.Context, call endpoint.Endpoint) {
	d.say("The console stays open for %v (Ctrl-C ends it sooner): click Drain on a greeter.", d.linger)
	end := time.NewTimer(d.linger)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := d.traffic(ctx, call, 6); err != nil && !errors.Is(err, context.Canceled) {
				d.say("%s", fmt.Sprint(err))
			}
		}
	}
}

// stop ends the console and waits for it.
func (c *demoConsole) stop() {
	c.cancel()
	<-c.served
	c.srv.Close()
}
