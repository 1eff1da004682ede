// Command etcd35 runs a single-member etcd 3.5 server on loopback ports, so
// that .ci/run can prove etcdsd against etcd 3.5 without an etcd 3.5 binary
// on the machine: it embeds go.etcd.io/etcd/server/v3 v3.5 in a module of
// its own, which the main module never depends on.
//
//	etcd35 -data-dir DIR -client-port 23790 -peer-port 23791
//
// It prints its client URL on stdout once it serves clients, and stops on
// SIGTERM or SIGINT. Data stays in -data-dir; the caller removes it.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("data-dir", "", "directory for etcd's data (required)")
	clientPort := flag.Int("client-port", 0, "loopback port to serve clients on (required)")
	peerPort := flag.Int("peer-port", 0, "loopback port for the peer listener (required)")
	ready := flag.Duration("ready-timeout", time.Minute, "how long to wait for etcd to serve clients")
	flag.Parse()
	if *dir == "" || *clientPort <= 0 || *peerPort <= 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: etcd35 -data-dir DIR -client-port PORT -peer-port PORT")
		os.Exit(2)
	}
	if err := run(*dir, loopback(*clientPort), loopback(*peerPort), *ready); err != nil {
		fmt.Fprintln(os.Stderr, "etcd35:", err)
		os.Exit(1)
	}
}

func loopback(port int) url.URL {
	return url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
}

func run(dir string, client, peer url.URL, ready time.Duration) error {
	cfg := embed.NewConfig()
	cfg.Name = "etcd35"
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}

	// Listen for signals before starting, so none is missed in between.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start on %s: %w", client.Host, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("serve on %s: %w", client.Host, err)
	case <-stop:
		return nil
	case <-time.After(ready):
		return fmt.Errorf("not serving clients on %s after %v", client.Host, ready)
	}
	fmt.Println(client.String())

	select {
	case <-stop:
		return nil
	case err := <-e.Err():
		return fmt.Errorf("serve on %s: %w", client.Host, err)
	}
}
