# Shared by .ci/run and the scripts it calls: step timing, and starting and
# stopping an etcd and a grpc-proxy on free loopback ports. Source it from
# bash with "set -euo pipefail" after cd to the repository's root.

# step NAME starts a step, and reports how long the previous one took.
step_name= step_start=$SECONDS
step() {
	if [ -n "$step_name" ]; then
		echo "-- ${step_name}: $((SECONDS - step_start)) s"
	fi
	step_name=${1:-} step_start=$SECONDS
	if [ -n "$step_name" ]; then
		echo "== $step_name"
	fi
}

COMPAT_PKGS=(./integration/core/ ./integration/endpointer/ ./integration/grpcsd/ ./integration/catalog/)
compat_tmp=$(mktemp -d)
etcd_pid=
proxy_pid=

# stop_pid PID stops a process this script started: SIGTERM, then SIGKILL
# after 10 s.
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# stop_etcd stops the etcd this script started, if it runs.
stop_etcd() {
	[ -n "$etcd_pid" ] || return 0
	stop_pid "$etcd_pid"
	etcd_pid=
}

# stop_proxy stops the grpc-proxy this script started, if it runs.
stop_proxy() {
	[ -n "$proxy_pid" ] || return 0
	stop_pid "$proxy_pid"
	proxy_pid=
}
trap 'stop_proxy; stop_etcd; rm -rf "$compat_tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port prints a loopback port nothing listens on, below the kernel's
# ephemeral range (32768 and up) that the tests' own listeners draw from.
free_port() {
	local port
	while :; do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
}

# http_get PORT PATH prints the body of a GET to 127.0.0.1:PORT, in bash
# alone (no curl on a fresh machine is assumed).
http_get() {
	timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
		sed "1,/^\r\$/d" <&3' http_get "$1" "$2"
}

# start_etcd WANT LAUNCHER starts etcd with "LAUNCHER CLIENT_PORT PEER_PORT
# DATA_DIR" on free loopback ports, waits until it is healthy, checks that
# it reports server version WANT.*, and sets etcd_endpoint.
start_etcd() {
	local want=$1 launcher=$2 attempt client peer dir version
	for attempt in 1 2 3; do
		client=$(free_port) peer=$(free_port)
		[ "$client" != "$peer" ] || continue
		dir=$(mktemp -d "$compat_tmp/etcd.XXXXXX")
		"$launcher" "$client" "$peer" "$dir/data" >"$dir/log" 2>&1 &
		etcd_pid=$!
		for _ in $(seq 300); do
			kill -0 "$etcd_pid" 2>/dev/null || break
			if [[ "$(http_get "$client" /health 2>/dev/null)" == *'"health":"true"'* ]]; then
				version=$(http_get "$client" /version)
				echo "etcd at 127.0.0.1:$client: $version"
				if [[ "$version" != *"\"etcdserver\":\"$want."* ]]; then
					echo "compat: wanted etcd server $want" >&2
					return 1
				fi
				etcd_endpoint=127.0.0.1:$client
				return 0
			fi
			sleep 0.2
		done
		echo "compat: etcd $want did not become healthy (attempt $attempt); its log:" >&2
		tail -n 20 "$dir/log" >&2
		stop_etcd
	done
	return 1
}

# compat_pass runs the suite against the etcd at etcd_endpoint, then stops it.
compat_pass() {
	ETCD_ENDPOINTS=$etcd_endpoint go test -count=1 -timeout 10m "${COMPAT_PKGS[@]}"
	ETCD_ADDR=$etcd_endpoint bash scripts/gokit-conformance.sh
	stop_etcd
}

# start_grpc_proxy BINARY starts "BINARY grpc-proxy start" on a free
# loopback port in front of the etcd at etcd_endpoint, waits until it
# serves /health with the etcd's health behind it, and sets proxy_endpoint.
start_grpc_proxy() {
	local bin=$1 attempt port dir
	for attempt in 1 2 3; do
		port=$(free_port)
		dir=$(mktemp -d "$compat_tmp/grpc-proxy.XXXXXX")
		# The proxy's default --data-dir is relative; its own directory
		# keeps it out of the repository.
		(cd "$dir" && exec "$bin" grpc-proxy start --endpoints="$etcd_endpoint" \
			--listen-addr="127.0.0.1:$port" >"$dir/log" 2>&1) &
		proxy_pid=$!
		for _ in $(seq 150); do
			kill -0 "$proxy_pid" 2>/dev/null || break
			if [[ "$(http_get "$port" /health 2>/dev/null)" == *'"health":"true"'* ]]; then
				echo "grpc-proxy ($("$bin" --version | sed -n 's/^etcd Version: //p')) at 127.0.0.1:$port in front of $etcd_endpoint"
				proxy_endpoint=127.0.0.1:$port
				return 0
			fi
			sleep 0.2
		done
		echo "compat: grpc-proxy $bin did not serve (attempt $attempt); its log:" >&2
		tail -n 20 "$dir/log" >&2
		stop_proxy
	done
	return 1
}

# proxy_pass runs the suite through the grpc-proxy at proxy_endpoint, then
# stops the proxy and the etcd.
proxy_pass() {
	ETCD_ENDPOINTS=$proxy_endpoint go test -count=1 -timeout 10m "${COMPAT_PKGS[@]}"
	ETCD_ADDR=$proxy_endpoint bash scripts/gokit-conformance.sh
	stop_proxy
	stop_etcd
}

# install_etcd34 installs Debian's etcd-server (3.4) unless it is there.
install_etcd34() {
	if [[ "$(etcd34_version)" == 3.4.* ]]; then
		echo "already installed: etcd $(etcd34_version)"
		return
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
	echo "installed: etcd $(etcd34_version)"
}
etcd34_version() { /usr/bin/etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'; }

launch_etcd34() {
	exec /usr/bin/etcd --name compat34 --data-dir "$3" \
		--listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
		--listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
		--initial-cluster "compat34=http://127.0.0.1:$2" \
		--logger zap --log-outputs stderr --log-level error
}

launch_etcd35() {
	exec "$compat_tmp/etcd35" -data-dir "$3" -client-port "$1" -peer-port "$2"
}


# launch_etcd37 runs etcd 3.7's own command line (tools/grpcproxy37, built by
# .ci/grpc-proxy) as a server.
launch_etcd37() {
	exec "$compat_tmp/grpcproxy37" --name compat37 --data-dir "$3" \
		--listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
		--listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
		--initial-cluster "compat37=http://127.0.0.1:$2" \
		--logger zap --log-outputs stderr --log-level error
}
