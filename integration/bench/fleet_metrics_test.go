package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// etcdSample is what one etcd member's /metrics says at one moment. The
// counters count from the member process's start (startTime), so a sample
// of a restarted member is compared with zero, not with the sample before.
type etcdSample struct {
	startTime  float64 // process_start_time_seconds
	rangeReads float64 // grpc_server_handled_total{grpc_method="Range"}, all codes
	sentBytes  float64 // etcd_network_client_grpc_sent_bytes_total
	cpuSeconds float64 // process_cpu_seconds_total
	rssBytes   float64 // process_resident_memory_bytes (a gauge)
	watchers   float64 // etcd_debugging_mvcc_watcher_total (a gauge)
}

// fleetSample holds one etcdSample per member endpoint that answered.
type fleetSample map[string]etcdSample

// etcdLoad is what etcd did between two samples, summed over its members:
// counters as differences, gauges as of the second sample.
type etcdLoad struct {
	rangeReads, sentBytes, cpuSeconds float64
	rssBytes, watchers                float64
}

// load returns what the members did from before to after. A member missing
// from after (killed) counts for nothing: its counters died with it. A
// member whose process started after before counts from zero.
func load(before, after fleetSample) etcdLoad {
	var l etcdLoad
	for ep, a := range after {
		b, ok := before[ep]
		if !ok || b.startTime != a.startTime {
			b = etcdSample{}
		}
		l.rangeReads += a.rangeReads - b.rangeReads
		l.sentBytes += a.sentBytes - b.sentBytes
		l.cpuSeconds += a.cpuSeconds - b.cpuSeconds
		l.rssBytes += a.rssBytes
		l.watchers += a.watchers
	}
	return l
}

// scrapeAll samples every endpoint that answers; a member that is down is
// left out, so that load counts it as gone.
func scrapeAll(endpoints []string) fleetSample {
	s := make(fleetSample, len(endpoints))
	for _, ep := range endpoints {
		if m, err := scrape(ep); err == nil {
			s[ep] = m
		}
	}
	return s
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// scrape reads the /metrics that etcd serves on its client endpoint.
func scrape(endpoint string) (etcdSample, error) {
	url := "http://" + endpoint + "/metrics"
	resp, err := metricsClient.Get(url)
	if err != nil {
		return etcdSample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return etcdSample{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	s, err := parseMetrics(resp.Body)
	if err != nil {
		return etcdSample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// parseMetrics reads the series etcdSample needs from Prometheus' text
// format, summing a counter's series over their labels. etcd writes no
// timestamps, so a line is "name{labels} value".
func parseMetrics(r io.Reader) (etcdSample, error) {
	var s etcdSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		name, labels, _ := strings.Cut(series, "{")
		var dst *float64
		switch name {
		case "process_start_time_seconds":
			dst = &s.startTime
		case "grpc_server_handled_total":
			if strings.Contains(labels, `grpc_method="Range"`) {
				dst = &s.rangeReads
			}
		case "etcd_network_client_grpc_sent_bytes_total":
			dst = &s.sentBytes
		case "process_cpu_seconds_total":
			dst = &s.cpuSeconds
		case "process_resident_memory_bytes":
			dst = &s.rssBytes
		case "etcd_debugging_mvcc_watcher_total":
			dst = &s.watchers
		}
		if dst == nil {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return etcdSample{}, fmt.Errorf("parse %q: %w", line, err)
		}
		*dst += v
	}
	if err := sc.Err(); err != nil {
		return etcdSample{}, fmt.Errorf("read metrics: %w", err)
	}
	return s, nil
}

// processCPUOf returns the user+sys CPU time of process pid from
// /proc/PID/stat, for a process that serves no /metrics of its own that we
// read (the grpc-proxy).
func processCPUOf(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of process %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, in clock ticks of 1/100 s on
	// Linux.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of process %d: short stat %q", pid, raw)
	}
	var ticks int64
	for _, s := range f[11:13] {
		t, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu of process %d: parse %q: %w", pid, s, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
