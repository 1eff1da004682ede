package etcdtest_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
)

// Example registers three instances in a real etcd and reads them back.
func Example() {
	t := etcdtest.NewExampleTB() // in a test, use its *testing.T
	defer t.Finish()

	srv := etcdtest.NewServer(t) // stopped when the test ends
	cli := srv.Client(t)         // closed before that
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"} {
		if _, err := cli.Put(ctx, "/example/services/app/"+addr, addr); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "/example/services/app/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(resp.Count, "instances")
	// Output: 3 instances
}

// ExampleStartProcess shows that data survives kill -9. A package whose
// tests call StartProcess needs this TestMain, as this package has:
//
//	func TestMain(m *testing.M) {
//		etcdtest.RunServerIfChild()
//		os.Exit(m.Run())
//	}
func ExampleStartProcess() {
	t := etcdtest.NewExampleTB() // in a test, use its *testing.T
	defer t.Finish()

	p := etcdtest.StartProcess(t) // killed when the test ends
	cli := p.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/example/durable", "yes"); err != nil {
		t.Fatal(err)
	}
	p.Kill()    // SIGKILL
	p.Restart() // same ports, same data; the client reconnects
	resp, err := cli.Get(ctx, "/example/durable")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
	// Output: yes
}
