//lint:file-ignore SA1019 these tests check that NewClient recognises the deprecated options go-kit programs pass

package etcdv3

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// blockingOptions calls the constructors in a function of its own, where
// they may be inlined differently than in blocks' test below.
func blockingOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithBlock(), grpc.WithReturnConnectionError()}
}

func TestBlocksRecognisesGRPCWithBlock(t *testing.T) {
	inClosure := func() []grpc.DialOption { return []grpc.DialOption{grpc.WithBlock(), grpc.WithReturnConnectionError()} }()
	for i, o := range append(append(blockingOptions(), inClosure...), grpc.WithBlock(), grpc.WithReturnConnectionError()) {
		if !blocks([]grpc.DialOption{grpc.WithUserAgent("x"), o}) {
			t.Errorf("option %d (WithBlock or WithReturnConnectionError) not recognised", i)
		}
	}
	others := []grpc.DialOption{
		grpc.WithUserAgent("x"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithIdleTimeout(time.Second),
		grpc.WithDisableRetry(),
		nil,
	}
	if blocks(others) {
		t.Error("options without WithBlock taken as blocking")
	}
}

// An endpoint etcd's client would dial in vain until the dial timeout is
// refused at once, naming it; what go-kit's tests pass (an unresolvable
// name with http://) and etcd's other forms are taken, lazily.
func TestNewClientRefusesMalformedEndpointsAtOnce(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1", "etcd.example", "127.0.0.1:http", "ftp://127.0.0.1:2379", "http://127.0.0.1", "unix://", "[::1"} {
		start := time.Now()
		c, err := NewEtcdClient(context.Background(), []string{"127.0.0.1:2379", ep}, ClientOptions{DialTimeout: 3 * time.Second})
		if err == nil {
			c.Close()
			t.Errorf("NewEtcdClient(%q): no error", ep)
			continue
		}
		if !errors.Is(err, ErrMalformedEndpoint) || !strings.Contains(err.Error(), `"`+ep+`"`) {
			t.Errorf("NewEtcdClient(%q): %v; want ErrMalformedEndpoint naming it", ep, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("NewEtcdClient(%q) took %v, want at once", ep, took)
		}
	}
	for _, ep := range []string{"http://irrelevant:12345", "127.0.0.1:2379", "https://etcd.example:2379", "[::1]:2379", "unix:///run/etcd.sock", "localhost:2379"} {
		c, err := NewEtcdClient(context.Background(), []string{ep}, ClientOptions{DialTimeout: 3 * time.Second})
		if err != nil {
			t.Errorf("NewEtcdClient(%q): %v", ep, err)
			continue
		}
		c.Close()
	}
}
