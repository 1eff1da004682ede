package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

const (
	authUser     = "svc"
	authPassword = "s3cret"
)

// rpcCounter counts every RPC attempt a client makes, retries included.
type rpcCounter struct{ n atomic.Int64 }

func (rc *rpcCounter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			rc.n.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			rc.n.Add(1)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// authServer is an etcd with auth on: authUser may use only prefix.
func authServer(t *testing.T, prefix string) (*etcdtest.Server, *fleet, *logTail) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("auth needs an embedded etcd")
	}
	root := srv.EnableAuth(authUser, authPassword, prefix)
	logs := newLogTail(t)
	return srv, newFleet(t, prefix, root, logs), logs
}

func TestAuthWithRoleLimitedToPrefix(t *testing.T) {
	srv, f, logs := authServer(t, "/faults/auth/")
	c := newClient(t, logs, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.Username, o.Password = authUser, authPassword
	})
	f.watch("authenticated", c)
	for i := range 3 {
		f.register(c, fmt.Sprint(i))
	}
	f.mustCheck("registered with a limited role")

	// Outside its prefix the user is refused, with an error that says so.
	_, err := etcdv3.NewInstancer(c, "/faults/other/", logs)
	if !errors.Is(err, rpctypes.ErrPermissionDenied) || !strings.Contains(err.Error(), "/faults/other/") {
		t.Fatalf("instancer outside the role's prefix: err = %v, want permission denied naming the prefix", err)
	}
}

func TestAuthWrongPasswordFailsClearlyWithinDialTimeout(t *testing.T) {
	srv, _, logs := authServer(t, "/faults/auth-wrong/")
	start := time.Now()
	_, err := etcdv3.NewClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{
		DialTimeout: dialTimeout, Username: authUser, Password: "wrong", Logger: logs,
	})
	took := time.Since(start)
	if err == nil {
		t.Fatal("NewClient with a wrong password succeeded")
	}
	if !errors.Is(err, rpctypes.ErrAuthFailed) || !strings.Contains(err.Error(), fmt.Sprintf("%q", authUser)) {
		t.Fatalf("err = %v; want authentication failed, naming user %q", err, authUser)
	}
	if took > 2*dialTimeout {
		t.Fatalf("NewClient took %v to fail, want within the dial timeout %v", took, dialTimeout)
	}
}

func TestAuthPasswordChangedWhileRunningDoesNotSpin(t *testing.T) {
	srv, f, logs := authServer(t, "/faults/auth-changed/")
	var rpcs rpcCounter
	c := newClient(t, logs, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.Username, o.Password = authUser, authPassword
		o.DialOptions = rpcs.dialOptions()
	})
	f.watch("authenticated", c)
	for i := range 3 {
		f.register(c, fmt.Sprint(i))
	}
	f.mustCheck("registered")

	// The password changes under the running client: its token is revoked
	// and every new login fails.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.truth.UserChangePassword(ctx, authUser, "rotated"); err != nil {
		t.Fatal(err)
	}
	reg := f.live[f.keys()[0]].reg
	itest.Eventually(t, 5*time.Second, "the registrar reports the auth failure", func() bool {
		return errors.Is(reg.Status().Err, rpctypes.ErrAuthFailed)
	})
	// Nothing retries in a tight loop: the keeper tries once per heartbeat
	// (4/s) and the watcher backs off to one snapshot per 2 s. Allow for
	// clientv3's own retry of each call after a token error.
	const window = 3 * time.Second
	before := rpcs.n.Load()
	time.Sleep(window)
	rate := float64(rpcs.n.Load()-before) / window.Seconds()
	t.Logf("with a revoked password: %.1f RPC attempts/s", rate)
	if rate > 20 {
		t.Fatalf("%.1f RPC attempts/s with a revoked password: a retry loop spins", rate)
	}
	if st := reg.Status(); !strings.Contains(fmt.Sprint(st.Err), "authentication failed") {
		t.Fatalf("registrar status while locked out: %+v; want an error naming the auth failure", st)
	}

	// Put the password back: the client logs in again by itself and
	// everything comes back.
	if _, err := f.truth.UserChangePassword(ctx, authUser, authPassword); err != nil {
		t.Fatal(err)
	}
	f.mustCheck("after the password was restored")
}
