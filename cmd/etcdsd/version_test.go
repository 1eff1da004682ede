package main

import (
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// etcdsd --version says which etcdsd it is, and exits 0.
func TestVersionFlagPrintsTheModuleVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}} {
		code, out, errOut, _ := runCLI(t, args...)
		if code != 0 || errOut != "" || !regexp.MustCompile(`^etcdsd (v\S+|devel \(.+\)) go1\.\d+\S* \w+/\w+\n$`).MatchString(out) {
			t.Errorf("etcdsd %s: exit %d, stdout %q, stderr %q; want \"etcdsd <version> go1.x os/arch\"", args, code, out, errOut)
		}
	}
}

// A release says its module version; a build in the repository ("go
// run", "go build": version "(devel)") says the commit it was built from,
// never "(devel)".
func TestVersionSaysTheReleaseOrTheCommit(t *testing.T) {
	info := func(v string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/etcdsd/etcdsd", Version: v}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		info *debug.BuildInfo
		want string
	}{
		{info("v1.2.3", "vcs.revision", "0123456789abcdef"), "etcdsd v1.2.3 go1.26.0 "},
		{info("(devel)", "vcs.revision", "0123456789abcdef", "vcs.modified", "true"), "etcdsd devel (commit 0123456789ab, modified) go1.26.0 "},
		{info("(devel)", "vcs.revision", "0123456789abcdef", "vcs.modified", "false"), "etcdsd devel (commit 0123456789ab) go1.26.0 "},
		{info(""), "etcdsd devel (built without version control information) go1.26.0 "},
	} {
		if got := version(tc.info, true); !strings.HasPrefix(got, tc.want) {
			t.Errorf("version of %+v = %q, want %q...", tc.info.Main, got, tc.want)
		}
	}
	if got := version(nil, false); !strings.HasPrefix(got, "etcdsd devel (built without version control information) go1.") {
		t.Errorf("version without build info = %q", got)
	}
}
