package main

import (
	"errors"
	"regexp"
	"strings"

	"github.com/etcdsd/etcdsd/catalog"
)

var (
	// libPrefix is a package prefix of the library's wrapping, at the start
	// of a message or of a wrapped one: the operation after it says more.
	libPrefix = regexp.MustCompile(`(^|: |\()(?:catalog|console|etcdv3): `)
	// rpcPrefix is how gRPC spells a status; its description is the cause.
	rpcPrefix = regexp.MustCompile(`rpc error: code = \w+ desc = `)
	// dialDeadline is a dial timeout that already says how long it waited.
	dialDeadline = regexp.MustCompile(`(within (?:dial timeout )?\S+)(?:: etcd unreachable)?: context deadline exceeded`)
)

// commandError returns what stderr says after "etcdsd <command>: ": err
// as one line, without the command's name said again when the error
// starts with the same operation ("watch: read prefix ...").
func commandError(command string, err error) string {
	return strings.TrimPrefix(oneLine(err), command+": ")
}

// oneLine returns err's message as one short line for stderr: the
// operation, the bad value and the cause, without the package prefixes
// the library's wrapping adds, gRPC's status spelling, or a deadline said
// twice. A bad name or property is said as the value and what is wrong.
func oneLine(err error) string {
	s := err.Error()
	if errors.Is(err, catalog.ErrBadName) || errors.Is(err, catalog.ErrBadProperty) {
		for _, marker := range []string{catalog.ErrBadName.Error() + ": ", catalog.ErrBadProperty.Error() + ": "} {
			if i := strings.LastIndex(s, marker); i >= 0 {
				s = s[i+len(marker):]
			}
		}
	}
	s = libPrefix.ReplaceAllString(s, "$1")
	s = rpcPrefix.ReplaceAllString(s, "")
	s = dialDeadline.ReplaceAllString(s, "$1")
	s = strings.ReplaceAll(s, "context deadline exceeded", "no answer within --timeout")
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
