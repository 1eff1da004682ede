package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

func TestNewClientRejectsABadPropertiesRootNamingIt(t *testing.T) {
	for _, root := range []string{"/ops", " /ops/", "/ops/\x00/", "/"} {
		// Checked before dialing: the endpoint is never tried.
		_, err := NewClient(context.Background(), []string{"127.0.0.1:1"}, ClientOptions{PropertiesRoot: root})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("properties root %q", root)) {
			t.Errorf("PropertiesRoot %q: err = %v, want one naming it", root, err)
		}
	}
}

func TestPropertiesPrefixFollowsTheClientsOptions(t *testing.T) {
	for _, tc := range []struct {
		root, want string
		on         bool
	}{
		{"", "/etcdsd/properties/services/app/", true},
		{"/ops/props/", "/ops/props/services/app/", true},
		{"-", "", false},
	} {
		c := &EtcdClient{opts: ClientOptions{PropertiesRoot: tc.root}}
		got, on, err := propertiesPrefix(c, "/services/app/")
		if err != nil || on != tc.on || (on && got != tc.want) {
			t.Errorf("root %q: %q, %v, %v; want %q, %v", tc.root, got, on, err, tc.want, tc.on)
		}
	}
	if _, on, err := propertiesPrefix(newGoKitFake(), "/services/app/"); on || err != nil {
		t.Errorf("a go-kit style client reads properties (%v, %v)", on, err)
	}
}

// FromClient cannot fail, so a bad root fails each NewInstancer instead.
func TestInstancerOfFromClientWithABadPropertiesRootFailsNamingIt(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c := FromClient(cli, ClientOptions{PropertiesRoot: "/ops"})
	defer c.Close()
	_, err = NewInstancer(c, "/services/app/", nil)
	if err == nil || !strings.Contains(err.Error(), `properties root "/ops"`) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want one naming the properties root", err)
	}
}

// scriptedSource answers Snapshot with its errors in turn, then with one
// property; its Watch waits for the end.
type scriptedSource struct{ errs []error }

func (s *scriptedSource) Snapshot(context.Context) (int64, []pipeline.KV, error) {
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return 0, nil, err
	}
	return 7, []pipeline.KV{{Key: "/p/a/disabled", Value: "true", ModRev: 7}}, nil
}

func (s *scriptedSource) Watch(ctx context.Context, _ int64, _ func(pipeline.WatchResponse)) error {
	<-ctx.Done()
	return ctx.Err()
}

// The first answer etcd gives decides: a refusal then counts as no
// properties and the source reads no more; once read, a refusal is an
// error like any other.
func TestPropertiesSourceTakesARefusalBeforeAnyReadAsNoProperties(t *testing.T) {
	denied := fmt.Errorf("etcdv3: read prefix %q: %w", "/p/", rpctypes.ErrPermissionDenied)
	unreachable := errors.New("etcd unreachable")
	ctx := context.Background()

	s := &propertiesSource{Source: &scriptedSource{errs: []error{unreachable, denied}}, prefix: "/p/", logger: log.NewNopLogger()}
	if _, _, err := s.Snapshot(ctx); !errors.Is(err, unreachable) {
		t.Fatalf("first read: %v, want etcd unreachable", err)
	}
	if rev, kvs, err := s.Snapshot(ctx); err != nil || rev != 0 || kvs != nil {
		t.Fatalf("refused read: %d %v %v, want no properties and no error", rev, kvs, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Watch(wctx, 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch after a refusal: %v, want it to wait for the end of its context", err)
	}

	script := &scriptedSource{}
	s = &propertiesSource{Source: script, prefix: "/p/", logger: log.NewNopLogger()}
	if _, kvs, err := s.Snapshot(ctx); err != nil || len(kvs) != 1 {
		t.Fatalf("read: %v %v", kvs, err)
	}
	script.errs = []error{denied}
	if _, _, err := s.Snapshot(ctx); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("refusal after a read: %v, want it returned", err)
	}
}
