#!/usr/bin/env bash
# go-kit conformance: runs go-kit v0.13.0's own sd/etcdv3 tests, taken from
# the module cache at run time (never committed here), against etcdsd's
# etcdv3 sources, including the flaky_integration tests against a real
# (embedded) etcd. Every go-kit test must pass; docs/migration.md lists what
# etcdsd does differently on purpose.
#
# What the script changes, and why:
#   - the package location: go-kit's test files and etcdsd's etcdv3 sources
#     (not its tests) are copied into a scratch package inside the
#     integration module, which has the embedded etcd, under
#     github.com/etcdsd/etcdsd/ so that the sources may import the
#     library's internal packages;
#   - go-kit's irrelevantEndpoint, "http://irrelevant:12345", becomes
#     "http://127.0.0.1:1", a loopback port nothing listens on (only root
#     may bind it): resolving "irrelevant" would query a DNS server, and
#     tests here talk to loopback addresses only;
#   - a TestMain of ours starts an embedded etcd and sets ETCD_ADDR for the
#     integration tests (go-kit expects one running on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

GOKIT=github.com/go-kit/kit
GOKIT_VERSION=v0.13.0

dir=$(go mod download -json "${GOKIT}@${GOKIT_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
src="${dir}/sd/etcdv3"
[ -d "$src" ] || { echo "gokit-conformance: no $src" >&2; exit 1; }

# A name starting with "_" keeps the scratch package out of ./... patterns.
scratch=$(mktemp -d "$PWD/integration/_gokitconformance.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

cp etcdv3/*.go "$scratch/"
rm -f "$scratch"/*_test.go
cp "$src"/*_test.go "$scratch/"
chmod u+w "$scratch"/*

sed -i 's#"http://irrelevant:12345"#"http://127.0.0.1:1"#' "$scratch/client_test.go"
grep -q '"http://127.0.0.1:1"' "$scratch/client_test.go" || { echo "gokit-conformance: irrelevantEndpoint not found in go-kit's client_test.go" >&2; exit 1; }

cat > "$scratch/etcdsd_main_test.go" <<'GO'
package etcdv3

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
)

// TestMain starts the etcd that go-kit's integration tests find at
// ETCD_ADDR, unless one is given.
func TestMain(m *testing.M) {
	if os.Getenv("ETCD_ADDR") != "" {
		os.Exit(m.Run())
	}
	stop, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gokit-conformance:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startEtcd() (func(), error) {
	dir, err := os.MkdirTemp("", "gokit-conformance-etcd")
	if err != nil {
		return nil, err
	}
	ports, err := embedetcd.FreePorts(2)
	if err != nil {
		return nil, err
	}
	m := &embedetcd.Member{Name: "gokit-conformance", Dir: dir, Client: embedetcd.LoopbackURL(ports[0]), Peer: embedetcd.LoopbackURL(ports[1])}
	if err := m.Launch(3); err != nil {
		return nil, err
	}
	if err := m.WaitReady(time.Now().Add(30 * time.Second)); err != nil {
		m.Stop()
		return nil, err
	}
	os.Setenv("ETCD_ADDR", embedetcd.EndpointOf(m.Client))
	return func() { m.Stop(); os.RemoveAll(dir) }, nil
}
GO

# Every test function in go-kit's files must run and pass.
want=$(grep -ho '^func Test[A-Za-z0-9_]*' "$src"/*_test.go | sed 's/^func //' | sort)
log="$scratch/test.log"
status=0
go test -race -count=1 -tags flaky_integration -v "./integration/$(basename "$scratch")" >"$log" 2>&1 || status=$?
passed=$(sed -n 's/^--- PASS: \(Test[A-Za-z0-9_]*\) .*/\1/p' "$log" | sort)
missing=$(comm -23 <(echo "$want") <(echo "$passed"))
if [ "$status" -ne 0 ] || [ -n "$missing" ]; then
	cat "$log"
	echo "gokit-conformance: FAILED; go-kit tests not passed: ${missing:-(see above)}" >&2
	exit 1
fi
echo "gokit-conformance: all $(echo "$want" | wc -l) go-kit ${GOKIT_VERSION} sd/etcdv3 tests pass against etcdsd's etcdv3:"
echo "$passed" | sed 's/^/  /'
