package outage

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestInstancerStopReturnsWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	in, err := etcdv3.NewInstancer(c, "/outage/in/", itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	sub := itest.Subscribe(t, in)
	srv.Stop()
	sub.WaitFor(t, converge, "the outage reported", func(ev sd.Event) bool { return ev.Err != nil })
	returnsWithin(t, requestTimeout+slack, "Instancer.Stop", in.Stop)
}

func TestClientCloseReturnsWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	if err := c.Register(service("/outage/close/a")); err != nil {
		t.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, "/outage/close/", itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "EtcdClient.Close", func() { c.Close() })
}

func TestEndpointerCloseReturnsWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	if err := c.Register(service("/outage/ep/a")); err != nil {
		t.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, "/outage/ep/", itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	factory := func(string) (endpoint.Endpoint, io.Closer, error) { return endpoint.Nop, nil, nil }
	e, err := endpointer.New(in, factory, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "endpointer.Close", e.Close)
}

func TestGRPCResolverCloseReturnsWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	b, err := grpcsd.NewBuilder(c)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("etcd:///outage/grpc/", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	conn.Connect() // builds the resolver
	if err := c.Register(service("/outage/grpc/a")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "grpc ClientConn.Close (the resolver's Close)", func() { conn.Close() })
}

func TestGRPCPoolCloseReturnsWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	if err := c.Register(service("/outage/pool/a")); err != nil {
		t.Fatal(err)
	}
	p, err := grpcsd.NewPool(context.Background(), c, []string{"/outage/pool/"}, grpcsd.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "grpcsd.Pool.Close", func() { p.Close() })
}

func TestClientStartedBeforeEtcdRegistersAndFillsInOnceEtcdAnswers(t *testing.T) {
	srv := newServer(t)
	srv.Stop() // the service starts first, as after a reboot
	c := newClient(t, srv)
	const key = "/outage/first/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	returnsWithin(t, requestTimeout+slack, "Registrar.Register before etcd", r.Register)
	defer r.Deregister()
	var in *etcdv3.Instancer
	returnsWithin(t, requestTimeout+slack, "NewInstancer before etcd", func() {
		var err error
		if in, err = etcdv3.NewInstancer(c, "/outage/first/", itest.Logger(t)); err != nil {
			t.Error(err)
		}
	})
	if in == nil {
		t.FailNow()
	}
	defer in.Stop()
	if st := in.State(); st.Err == nil {
		t.Fatalf("Instancer state before etcd = %+v, want the error", st)
	}
	sub := itest.Subscribe(t, in)

	restart(t, srv)
	sub.WaitInstances(t, converge, "127.0.0.1:1")
}

// A Registrar retrying while etcd is down stops once its client is closed:
// a closed client never registers anything, and a program that closed it
// may never call Deregister.
func TestRegistrarStopsRetryingWhenItsClientIsClosed(t *testing.T) {
	srv := newServer(t)
	before := goleak.IgnoreCurrent()
	c, err := etcdv3.NewEtcdClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{DialTimeout: dialTimeout, RequestTimeout: dialTimeout})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	r := etcdv3.NewRegistrar(c, service("/outage/closed/a"), itest.Logger(t))
	r.Register()
	if st := r.State(); st != etcdv3.StateRegistering {
		t.Fatalf("state with etcd down = %v, want registering", st)
	}
	c.Close()
	itest.Eventually(t, requestTimeout+slack, "the Registrar stopped retrying", func() bool {
		return r.State() != etcdv3.StateRegistering
	})
	if st := r.Status(); st.State != etcdv3.StateIdle || st.Err == nil || !strings.Contains(st.Err.Error(), "client closed") {
		t.Fatalf("status after Close = %+v, want idle with the client closed", st)
	}
	if err := goleak.Find(before); err != nil {
		t.Fatalf("goroutines left after the client closed: %v", err)
	}
}
