package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// refusedForGood registers s and checks that RegisterContext fails at once
// (not when its context ends) with an error containing want, that the
// Registrar stays idle with that error, that nothing reaches etcd, and
// that Register logs the error go-kit style and does not retry.
func refusedForGood(t *testing.T, c etcdv3.Client, s etcdv3.Service, want string, exists func(string) bool) {
	t.Helper()
	r := etcdv3.NewRegistrar(c, s, itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.RegisterContext(ctx)
	if err == nil {
		t.Fatalf("RegisterContext of %q succeeded", shorten(s.Value))
	}
	if ctx.Err() != nil {
		t.Fatalf("RegisterContext retried until its context ended: %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
	if st := r.Status(); st.State != etcdv3.StateIdle || st.Err == nil || st.Err.Error() != err.Error() {
		t.Fatalf("status = %+v, want idle with the error", st)
	}
	if exists(s.Key) {
		t.Fatalf("%s in etcd after a refused registration", s.Key)
	}

	var logged itest.Buffer
	r = etcdv3.NewRegistrar(c, s, log.NewLogfmtLogger(&logged))
	r.Register()
	if st := r.Status(); st.State != etcdv3.StateIdle || st.Err == nil {
		t.Fatalf("status after Register = %+v, want idle with the error: it must not retry", st)
	}
	if got := logged.String(); !strings.HasPrefix(got, fmt.Sprintf("key=%s value=", s.Key)) || !strings.Contains(got, " err=") {
		t.Fatalf("Register logged %q, want go-kit's key=… value=… err=… line", got)
	}
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestRegisterRefusesValuesConsumersCannotParseNamingThem(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	admin := srv.Client(t)
	for _, value := range []string{"10.0.0.1 :80", `{"id":"app-1","version":"v2"}`, "{bad json"} {
		t.Run(value, func(t *testing.T) {
			s := etcdv3.Service{Key: "/s/bad-value", Value: value, TTL: shortTTL()}
			refusedForGood(t, c, s, fmt.Sprintf("%q", value), func(k string) bool { return itest.KeyExists(t, admin, k) })
			if err := etcdv3.NewRegistrar(c, s, nil).RegisterContext(context.Background()); !errors.Is(err, instance.ErrMalformed) {
				t.Fatalf("error %v does not wrap instance.ErrMalformed", err)
			}
		})
	}
}

func TestRegisterStopsAtEtcdsPermanentRefusals(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithConfig(func(cfg *embed.Config) { cfg.MaxRequestBytes = 1024 }))
	if srv.External() {
		t.Skip("needs an embedded etcd with a small request limit")
	}
	admin := srv.EnableAuth("svc", "pw", "/allowed/")
	exists := func(k string) bool { return itest.KeyExists(t, admin, k) }
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.Username, o.Password = "svc", "pw" })
	for _, tc := range []struct {
		name string
		s    etcdv3.Service
		want string
	}{
		{"value over etcd's request limit", etcdv3.Service{Key: "/allowed/big", Value: strings.Repeat("x", 2048), TTL: shortTTL()}, "too large"},
		{"value over etcd's message limit", etcdv3.Service{Key: "/allowed/bigger", Value: strings.Repeat("x", 1<<20), TTL: shortTTL()}, "too large"},
		{"value over the client's message limit", etcdv3.Service{Key: "/allowed/biggest", Value: strings.Repeat("x", 3<<20), TTL: shortTTL()}, "too large"},
		{"TTL over etcd's maximum", etcdv3.Service{Key: "/allowed/ttl", Value: "x:1", TTL: etcdv3.NewTTLOption(time.Second, math.MaxInt64)}, "TTL"},
		{"key the user may not write", etcdv3.Service{Key: "/denied/a", Value: "x:1", TTL: shortTTL()}, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) { refusedForGood(t, c, tc.s, tc.want, exists) })
	}
}
