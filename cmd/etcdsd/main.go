package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand of etcdsd.
type command struct {
	name string
	// args is what follows "etcdsd <name> [flags]" in its usage line.
	args    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order help shows them.
func commands() []command {
	return []command{
		{name: "demo", args: "[grpc]", summary: "run the whole job on an embedded etcd: register, discover, balance, fail over, recover", run: runDemo},
		{name: "services", summary: "list every service with its number of instances", run: runServices},
		{name: "list", args: "[<service> | <prefix>*]", summary: "list the instances of a service (or prefix*) with their weight and state", run: runList},
		{name: "watch", args: "[<service> | <prefix>*]", summary: "print instance and property events with revisions, live", run: runWatch},
		{name: "register", args: "--key <key> --value <value>", summary: "register a key under a lease until interrupted, then deregister", run: runRegister},
		{name: "drain", args: "(<service> <id> | --all <service>)", summary: "take an instance, or a whole service, out of rotation; processes keep running", run: runDrain},
		{name: "undrain", args: "(<service> <id> | --all <service>)", summary: "put a drained instance, or service, back into rotation", run: runUndrain},
		{name: "set-weight", args: "<service> <id> (<weight> | --clear)", summary: "override an instance's weight, or --clear the override", run: runSetWeight},
		{name: "console", args: "[--allow-writes] [--listen host:port]", summary: "serve a live web console: services, instances, leases, changes; drain and weight", run: runConsole},
	}
}

// lookup returns the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usageLine is the first line of a command's help.
func usageLine(name string) string {
	c, _ := lookup(name)
	return strings.TrimSpace("Usage: etcdsd " + name + " [flags] " + c.args)
}

// usageError marks bad command-line input: exit code 2, as flag does.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// run executes one command line and returns the process exit code: 0 on
// success, 1 when the command failed, 2 for bad usage. The common flags
// may come before the command too ("etcdsd --endpoints h:p services"):
// they are handed to the command ahead of its own arguments, so that a
// flag given on both sides takes the value given after the command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global, args, showVersion, err := parseGlobalFlags(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0
	case err == nil && showVersion:
		fmt.Fprintln(stdout, version(debug.ReadBuildInfo()))
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "etcdsd: %v\n%s\n", err, globalUsage)
		return 2
	case len(args) == 0 && len(global) > 0:
		fmt.Fprintf(stderr, "etcdsd: no command after the flags\n%s\n", globalUsage)
		return 2
	case len(args) == 0:
		printUsage(stdout)
		return 2
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		switch len(rest) {
		case 0:
			printUsage(stdout)
			return 0
		case 1:
			name, rest = rest[0], []string{"-h"}
		default:
			fmt.Fprintf(stderr, "etcdsd help: want one command, got %q\n", rest)
			return 2
		}
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "etcdsd: unknown command %q\n\n", name)
		printUsage(stderr)
		return 2
	}
	err = c.run(ctx, append(global, rest...), stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "etcdsd %s: %s\n", c.name, commandError(c.name, err))
		fmt.Fprintf(stderr, "%s; \"etcdsd %s -h\" for more\n", usageLine(c.name), c.name)
		return 2
	default:
		fmt.Fprintf(stderr, "etcdsd %s: %s\n", c.name, commandError(c.name, err))
		return 1
	}
}

// globalUsage follows a usage error made before the command.
const globalUsage = `Usage: etcdsd [common flags] <command> [flags] [arguments]; "etcdsd -h" for more`

// parseGlobalFlags parses the common flags placed before the command and
// returns them, spelled out for the command's own flag set, and the rest
// of args, which starts with the command; and whether --version was
// given. Before the command, --key is always the TLS key (register uses
// --key for the etcd key).
func parseGlobalFlags(args []string) (global, rest []string, showVersion bool, err error) {
	fs := flag.NewFlagSet("etcdsd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addCommonFlags(fs, true)
	fs.BoolVar(&showVersion, "version", false, "print etcdsd's version and exit")
	if err := fs.Parse(args); err != nil {
		if strings.HasPrefix(err.Error(), "flag provided but not defined") {
			err = fmt.Errorf("%w (only the common flags may come before the command)", err)
		}
		return nil, nil, false, err
	}
	fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if name == "version" {
			return
		}
		if name == "key" {
			name = "tls-key"
		}
		global = append(global, "--"+name+"="+f.Value.String())
	})
	return global, fs.Args(), showVersion, nil
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "etcdsd: service discovery on etcd v3 for go-kit")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: etcdsd <command> [flags] [arguments]")
	fmt.Fprintln(w, "       etcdsd [common flags] <command> [flags] [arguments]")
	fmt.Fprintln(w, "       etcdsd --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Common flags, before or after the command (given on both sides, the one after wins;")
	fmt.Fprintln(w, "before the command, --key is the TLS key):")
	fs := flag.NewFlagSet("etcdsd", flag.ContinueOnError)
	fs.SetOutput(w)
	addCommonFlags(fs, true)
	fs.PrintDefaults()
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "etcdsd <command> -h" or "etcdsd help <command>" for a command's flags.`)
	fmt.Fprintln(w, "Exit codes: 0 success, 1 the command failed, 2 bad usage.")
}

// parseFlags parses args with fs, printing help to stdout for -h, turning
// flag errors into usage errors, and refusing positional arguments beyond
// maxArgs (-1: any number).
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return err
		}
		return usageError{err}
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args()[maxArgs:])}
	}
	return nil
}
