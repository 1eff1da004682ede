// Package faults proves, against a real etcd, that discovery keeps every
// promise while everything else fails: leader loss, kill -9, partitions
// longer and shorter than the TTL, compaction, auth and TLS errors, and a
// soak of churn under random faults.
//
// It holds tests only. Each scenario ends by checking the same invariants
// once the fault has healed: every subscriber's last state equals a fresh
// read of etcd, every live Registrar's key is in etcd on a live lease, no
// instance is duplicated, and (in TestMain and under -race) no goroutine
// or data race is left. docs/reliability.md lists the scenarios and the
// soak's figures.
package faults
