package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
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
