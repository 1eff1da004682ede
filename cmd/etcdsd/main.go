package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order help shows them.
func commands() []command {
	return []command{
		{name: "demo", summary: "run the whole job on an embedded etcd: register, discover, balance, fail over, recover", run: runDemo},
		{name: "services", summary: "list every service with its number of instances", run: runServices},
		{name: "list", summary: "list the instances of a service (or prefix*) with their weight and state", run: runList},
		{name: "watch", summary: "print instance and property events with revisions, live", run: runWatch},
		{name: "register", summary: "register a key under a lease until interrupted, then deregister", run: runRegister},
		{name: "drain", summary: "take an instance out of rotation; its process keeps running", run: runDrain},
		{name: "undrain", summary: "put a drained instance back into rotation", run: runUndrain},
		{name: "set-weight", summary: "override an instance's weight, or --clear the override", run: runSetWeight},
		{name: "console", summary: "serve a live web console: services, instances, leases, changes; drain and weight", run: runConsole},
	}
}

// usageError marks bad command-line input: exit code 2, as flag does.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// run executes one command line and returns the process exit code: 0 on
// success, 1 when the command failed, 2 for bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "etcdsd %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "etcdsd %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "etcdsd: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "etcdsd: service discovery on etcd v3 for go-kit")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: etcdsd <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "etcdsd <command> -h" for a command's flags.`)
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
