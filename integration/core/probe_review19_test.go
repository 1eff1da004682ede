package core

import (
	"context"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// TestProbeStopOfOneSharedInstancerKeepsAnotherInstancersSubscriber: go-kit's
// sd.Instancer contract is per Instancer: Stop ends that Instancer's
// subscriptions, and a channel registered with another Instancer keeps
// receiving its events. Instancers of one client and prefix share a Feed,
// where a channel registered twice is one subscriber: stopping the first
// Instancer deregisters it from the second too.
func TestProbeStopOfOneSharedInstancerKeepsAnotherInstancersSubscriber(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := metricsClient(t, srv.Endpoints(), prometheus.NewRegistry())
	const prefix = "/services/probe-two-registrations/"
	a, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b := newInstancer(t, c, prefix)
	ch := make(chan sd.Event, 16)
	a.Register(ch)
	b.Register(ch)
	<-ch // the current state, sent once: the Feed counts ch once
	a.Stop()
	if _, err := srv.Client(t).Put(context.Background(), prefix+"x", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		t.Logf("b's subscriber got %+v", ev)
	case <-time.After(3 * time.Second):
		t.Error("the channel registered with b got nothing after a was stopped and the prefix changed")
	}
	b.Deregister(ch)
}
