package core

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// failNextTxn returns a client option whose unary interceptor, once armed,
// fails the next KV/Txn with err without sending it. A re-grant puts the
// keys of a lease in transactions; a registration's own put is a KV/Put.
func failNextTxn(armed *atomic.Bool, err error) func(*etcdv3.ClientOptions) {
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == "/etcdserverpb.KV/Txn" && armed.CompareAndSwap(true, false) {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	return func(o *etcdv3.ClientOptions) {
		o.DialOptions = append(o.DialOptions, grpc.WithChainUnaryInterceptor(icpt))
	}
}

// revoke revokes lease id as another client (or an expiry in a partition
// longer than the TTL) would.
func revoke(t *testing.T, admin *clientv3.Client, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := admin.Revoke(ctx, clientv3.LeaseID(id)); err != nil {
		t.Fatalf("revoke lease %x: %v", id, err)
	}
}

// bigValue is a valid instance value of about 900 KiB: two of them fit
// etcd's default request limit (1.5 MiB) one at a time, not together.
func bigValue(id string) string {
	return fmt.Sprintf(`{"id":%q,"name":"app","address":"127.0.0.1:8001","metadata":{"pad":%q}}`, id, strings.Repeat("x", 900*1024))
}

// keys returns the keys under prefix, read directly.
func keys(t *testing.T, admin *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := admin.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("get %q: %v", prefix, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// registeredThenLeaseLost registers key on c, then revokes its lease
// through admin, as a partition longer than the TTL would have it expire.
func registeredThenLeaseLost(t *testing.T, c etcdv3.Client, admin *clientv3.Client, key string, ttl *etcdv3.TTLOption) *etcdv3.Registrar {
	t.Helper()
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "127.0.0.1:8001", TTL: ttl}, itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	revoke(t, admin, r.Status().LeaseID)
	return r
}

// A Register that finds the shared lease lost re-grants it with every key
// on it; when that put fails, the other registrations must still come back
// within their TTL (the lost lease stays current, so the keeper's next
// heartbeat re-grants again).
func TestRegisterWhoseRegrantFailsLosesNoOtherRegistration(t *testing.T) {
	srv := etcdtest.NewServer(t)
	var armed atomic.Bool
	c := itestclient.New(t, srv.Endpoints(), failNextTxn(&armed, rpctypes.ErrGRPCLeaderChanged))
	admin := srv.Client(t)
	const ttlSeconds = 3
	ttl := etcdv3.NewTTLOption(time.Second, ttlSeconds*time.Second)
	const prefix = "/services/regrant-fails/"
	a := registeredThenLeaseLost(t, c, admin, prefix+"a", ttl)
	defer a.Deregister()

	armed.Store(true)
	b := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "b", Value: "127.0.0.1:8002", TTL: ttl}, itest.Logger(t))
	b.Register()
	defer b.Deregister()
	if armed.Load() {
		t.Fatal("the re-grant's transaction was not attempted")
	}
	itest.Eventually(t, ttlSeconds*time.Second, "both registrations in etcd within their TTL", func() bool {
		return fmt.Sprint(itest.Values(t, admin, prefix)) == "[127.0.0.1:8001 127.0.0.1:8002]"
	})
	itest.Eventually(t, ttlSeconds*time.Second, "both registrars registered on one healthy lease", func() bool {
		sa, sb := a.Status(), b.Status()
		return sa.State == etcdv3.StateRegistered && sb.State == etcdv3.StateRegistered &&
			sa.Err == nil && sb.Err == nil && sa.LeaseID == sb.LeaseID
	})
	lease := a.Status().LeaseID
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := admin.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if kv.Lease != lease {
			t.Fatalf("%s is on lease %x, not the registrars' lease %x", kv.Key, kv.Lease, lease)
		}
	}
}

// A re-grant carries every key of the lease: its failure, even one etcd
// would give for a request too large, says nothing about the registration
// that ran into it, which must be retried, not refused for good.
func TestRegisterIsNotRefusedForAFailedRegrantOfTheSharedLease(t *testing.T) {
	srv := etcdtest.NewServer(t)
	var armed atomic.Bool
	c := itestclient.New(t, srv.Endpoints(), failNextTxn(&armed, rpctypes.ErrGRPCRequestTooLarge))
	admin := srv.Client(t)
	ttl := etcdv3.NewTTLOption(time.Second, 3*time.Second)
	const prefix = "/services/regrant-blame/"
	a := registeredThenLeaseLost(t, c, admin, prefix+"a", ttl)
	defer a.Deregister()

	armed.Store(true)
	b := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "b", Value: "127.0.0.1:8002", TTL: ttl}, itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.RegisterContext(ctx); err != nil {
		t.Fatalf("b.RegisterContext = %v, want it registered once a re-grant passes", err)
	}
	defer b.Deregister()
	if armed.Load() {
		t.Fatal("the re-grant's transaction was not attempted")
	}
	itest.Eventually(t, 3*time.Second, "both registrations in etcd", func() bool {
		return fmt.Sprint(itest.Values(t, admin, prefix)) == "[127.0.0.1:8001 127.0.0.1:8002]"
	})
}

// Registrations that etcd takes one at a time but not in one request: once
// their lease is lost, the re-grant must put them in requests etcd takes.
func TestLeaseLostWithRegistrationsTooLargeForOneRequestRegistersEachAgain(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.Logger = nil }) // the values fill the log
	admin := srv.Client(t)
	const ttlSeconds = 2
	ttl := etcdv3.NewTTLOption(500*time.Millisecond, ttlSeconds*time.Second)
	const prefix = "/services/regrant-large/"
	var regs []*etcdv3.Registrar
	for _, id := range []string{"a", "b"} {
		r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + id, Value: bigValue(id), TTL: ttl}, nil)
		if err := r.RegisterContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer r.Deregister()
		regs = append(regs, r)
	}
	revoke(t, admin, regs[0].Status().LeaseID)
	itest.Eventually(t, ttlSeconds*time.Second, "both registrations back within their TTL", func() bool {
		return len(keys(t, admin, prefix)) == 2
	})
	itest.Eventually(t, ttlSeconds*time.Second, "the lease healthy", func() bool {
		st := regs[0].Status()
		return st.State == etcdv3.StateRegistered && st.Err == nil
	})
}
