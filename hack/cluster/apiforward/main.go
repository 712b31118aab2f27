//go:build linux

// Command apiforward gives the host a loopback door to a TCP service that
// listens inside another network namespace: it listens on --listen in its
// own namespace and, for each connection, opens one to --target from inside
// the namespace of --netns (a /proc/<pid>/ns/net path) and copies bytes both
// ways. `make cluster` uses it so that kubectl on the host reaches the API
// server of the node's namespace at 127.0.0.1 without the host namespace
// ever sending a packet to a non-loopback address.
//
//	apiforward --netns /proc/1234/ns/net --listen 127.0.0.1:6443 --target 127.0.0.1:6443
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	netns := flag.String("netns", "", "network namespace to dial from, e.g. /proc/<pid>/ns/net (required)")
	listen := flag.String("listen", "127.0.0.1:6443", "address to listen on, in this process's namespace")
	target := flag.String("target", "127.0.0.1:6443", "address to connect to, inside --netns")
	flag.Parse()
	if *netns == "" {
		fmt.Fprintln(os.Stderr, "apiforward: --netns is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *netns, *listen, *target)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiforward:", err)
		os.Exit(1)
	}
}

// run listens on listen until ctx ends and forwards every connection to
// target inside netns.
func run(ctx context.Context, netns, listen, target string) error {
	// Fail at start, not at the first client, when the namespace is unusable.
	if c, err := dialIn(ctx, netns, target); err != nil {
		log.Printf("apiforward: %s in %s is not answering yet: %v", target, netns, err)
	} else {
		_ = c.Close()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	log.Printf("apiforward: %s -> %s in %s", ln.Addr(), target, netns)
	return serve(ctx, ln, func(ctx context.Context) (net.Conn, error) { return dialIn(ctx, netns, target) })
}

// serve accepts connections on ln until ctx ends, and pipes each one to a
// connection from dial. It closes ln and waits for open connections to end.
func serve(ctx context.Context, ln net.Listener, dial func(context.Context) (net.Conn, error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting on %s: %w", ln.Addr(), err)
		}
		wg.Go(func() {
			defer func() { _ = c.Close() }()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			up, err := dial(dctx)
			cancel()
			if err != nil {
				log.Printf("apiforward: %s: %v", c.RemoteAddr(), err)
				return
			}
			defer func() { _ = up.Close() }()
			pipe(ctx, c, up)
		})
	}
}

// pipe copies a to b and b to a until both directions end or ctx does. When
// one side finishes sending, the other side's write half is closed, so
// half-closed TCP streams (a client that sent everything and waits) work.
func pipe(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { _ = a.Close(); _ = b.Close() })
	defer stop()
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Go(func() { one(a, b) })
	wg.Go(func() { one(b, a) })
	wg.Wait()
}

// dialIn connects to addr from inside the network namespace at nsPath. The
// socket is created on an OS thread moved into that namespace and keeps it
// for its whole life; the thread is moved back before it is released, and
// is discarded (never unlocked) if that fails.
func dialIn(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("opening this thread's network namespace: %w", err)}
			return
		}
		defer func() { _ = home.Close() }()
		target, err := os.Open(nsPath) //nolint:gosec // the namespace path is the operator's --netns flag

		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("opening network namespace %s: %w", nsPath, err)}
			return
		}
		defer func() { _ = target.Close() }()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("entering network namespace %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err := setns(home); err != nil {
			// The thread is still in the other namespace: keep it locked,
			// so the runtime ends it with this goroutine.
			if c != nil {
				_ = c.Close()
			}
			done <- result{err: fmt.Errorf("returning to the host network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("connecting to %s in %s: %w", addr, nsPath, err)
		}
		done <- result{c: c, err: err}
	}()
	r := <-done
	return r.c, r.err
}

// setns moves the calling OS thread into the network namespace of f.
func setns(f *os.File) error {
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return nil
}
