// Package console is the web console of `etcdsd console`: an overview of
// every service, a live page per service, an event log, and drain and
// weight controls, served from one binary with embedded assets.
//
// A Server follows the catalog through one catalog.Watch (etcdsd's
// pipeline; no polling of etcd for instances or properties) into a model
// that Server-Sent Events streams render, coalesced, to each browser. Its
// controls call the catalog's property API, as the CLI's drain, undrain and
// set-weight do. Lease TTLs are read on demand: the service page asks for
// them every few seconds, and each distinct lease is read at most once a
// second; and while the Watch reports an error, one key is read every 2 s
// to tell when etcd answers again.
//
// It is safe by default: Listen refuses a non-loopback address without TLS
// or an explicit insecure flag; the Server is read-only unless
// Config.AllowWrites, and then every write needs Config.Token in the
// X-Etcdsd-Token header, which no cross-site form can send. Every request is
// bounded in size and time.
package console
