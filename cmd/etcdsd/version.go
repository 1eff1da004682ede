package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version says which etcdsd this is, from the build information the Go
// toolchain stamps into the binary: the module version when installed with
// "go install ...@v1.2.3", else "devel" with the commit it was built from
// (when the build recorded it), then the Go release and platform.
func version(info *debug.BuildInfo, ok bool) string {
	v, goVersion := "devel", runtime.Version()
	var commit, modified string
	if ok {
		goVersion = info.GoVersion
		if mv := info.Main.Version; mv != "" && mv != "(devel)" {
			v = mv
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
	}
	switch {
	case v != "devel":
	case commit != "":
		v += fmt.Sprintf(" (commit %.12s%s)", commit, modified)
	default:
		v += " (built without version control information)"
	}
	return fmt.Sprintf("etcdsd %s %s %s/%s", v, goVersion, runtime.GOOS, runtime.GOARCH)
}
