package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// Example cuts an Instancer off from etcd behind a fault proxy: its
// subscriber hears of the outage once, keeps its instances, and gets the
// true state, including what changed meanwhile, when the network heals.
func Example() {
	t := etcdtest.NewExampleTB() // in a test, use its *testing.T
	defer t.Finish()

	srv := etcdtest.NewServer(t)
	admin := srv.Client(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	c, err := etcdv3.NewEtcdClient(context.Background(), []string{proxy.Endpoint()},
		etcdv3.ClientOptions{DialTimeout: 300 * time.Millisecond, RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	admin.Put(ctx, "/example/faults/a", "10.0.0.1:80")

	in, err := etcdv3.NewInstancer(c, "/example/faults/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	events := make(chan sd.Event, 1)
	in.Register(events)
	defer in.Deregister(events)
	fmt.Println("connected:", (<-events).Instances)

	proxy.Blackhole() // the network drops everything
	proxy.DropConnections()
	ev := <-events
	fmt.Println("cut off:", ev.Instances, "error:", ev.Err != nil)

	admin.Put(ctx, "/example/faults/b", "10.0.0.2:80") // etcd moves on
	proxy.Unblackhole()
	fmt.Println("healed:", (<-events).Instances)
	// Output:
	// connected: [10.0.0.1:80]
	// cut off: [10.0.0.1:80] error: true
	// healed: [10.0.0.1:80 10.0.0.2:80]
}
