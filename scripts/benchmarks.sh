#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md side by side with its peer and
# summarises each with benchstat. Results go to .bench/ (not committed).
# Takes about 20 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .bench
BENCHSTAT="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"
COUNT="${COUNT:-6}"

run() { # name, package, go test flags...
	local name=$1 pkg=$2
	shift 2
	echo "== $name"
	# go-kit's etcd client logs through zap, in the middle of result lines;
	# the awk program joins such a line back together.
	go test -run '^$' -benchmem -count "$COUNT" "$@" "$pkg" 2>&1 |
		awk '/^Benchmark.*\{"level"/ { sub(/\{"level".*$/, ""); printf "%s", $0; next } /^\{"level"/ { next } { print }' |
		tee ".bench/$name.txt" | grep -E '^Benchmark' || true
}

run propagation ./integration/bench/ -bench Propagation -benchtime 300x
# Each churn run takes about 3 minutes, hence fewer of them.
run churn ./integration/bench/ -bench Churn -benchtime 1x -count "${CHURN_COUNT:-3}"
run cache ./internal/pipeline/ -bench ChangeToSubscriber
run pick ./endpointer/ -bench .
run grpc-pick ./grpcsd/ -bench Pick
run grpc-update ./integration/grpcsd/ -bench UpdateLatency -benchtime 200x
run catalog ./integration/catalog/ -bench .

echo "== benchstat"
$BENCHSTAT -col /impl .bench/propagation.txt > .bench/propagation.stat
$BENCHSTAT -col /impl .bench/churn.txt > .bench/churn.stat
$BENCHSTAT .bench/cache.txt > .bench/cache.stat
$BENCHSTAT -col /impl .bench/pick.txt > .bench/pick.stat
$BENCHSTAT -col /picker .bench/grpc-pick.txt > .bench/grpc-pick.stat
$BENCHSTAT -col /resolver .bench/grpc-update.txt > .bench/grpc-update.stat
$BENCHSTAT .bench/catalog.txt > .bench/catalog.stat
echo "summaries in .bench/*.stat"
