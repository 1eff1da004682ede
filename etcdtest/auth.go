package etcdtest

import (
	"context"
	"crypto/rand"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnableAuth turns on etcd authentication for a plain-text server: it
// creates the root user with a random password, a user with password whose
// only role (named after the user) may read and write the keys under
// prefix, and enables auth. It returns a client logged in as root, closed
// when the test ends, to change the user's password or permissions later.
// On an external server (ETCD_ENDPOINTS) it skips the test: auth is global.
func (s *Server) EnableAuth(user, password, prefix string) *clientv3.Client {
	s.tb.Helper()
	s.skipIfExternal("EnableAuth")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := s.Client(s.tb)
	rootPassword := rand.Text()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add root user", func() error { _, err := admin.UserAdd(ctx, "root", rootPassword); return err }},
		{"grant root role", func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role " + user, func() error { _, err := admin.RoleAdd(ctx, user); return err }},
		{"grant " + prefix + " to role " + user, func() error {
			_, err := admin.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user " + user, func() error { _, err := admin.UserAdd(ctx, user, password); return err }},
		{"grant role to user " + user, func() error { _, err := admin.UserGrantRole(ctx, user, user); return err }},
		{"enable auth", func() error { _, err := admin.AuthEnable(ctx); return err }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			s.tb.Fatalf("etcdtest: enable auth: %s: %v", st.what, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		DialTimeout: 5 * time.Second,
		Username:    "root",
		Password:    rootPassword,
		Logger:      newTestLog(s.tb).zapLogger(),
	})
	if err != nil {
		s.tb.Fatalf("etcdtest: enable auth: log in as root: %v", err)
	}
	s.tb.Cleanup(func() { root.Close() })
	return root
}
