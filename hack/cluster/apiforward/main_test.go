//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestForwardIntoNamespace runs a server that listens only inside a fresh
// network namespace, shows the host cannot reach it, and reaches it through
// the forwarder on the host's loopback, including a half-closed stream.
func TestForwardIntoNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create and enter a network namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	holder := exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec sleep 300")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatalf("starting the namespace holder: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("namespace holder: %q, %v", line, err)
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)

	// An upper-casing echo server listening on loopback inside the namespace.
	inner := listenIn(t, nsPath)
	t.Cleanup(func() { _ = inner.Close() })
	go func() {
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				data, _ := io.ReadAll(c)
				_, _ = c.Write([]byte(strings.ToUpper(string(data))))
			}()
		}
	}()
	target := inner.Addr().String()
	if c, err := net.DialTimeout("tcp", target, 2*time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("%s is reachable from the host namespace; the test needs it not to be", target)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, ln, func(ctx context.Context) (net.Conn, error) { return dialIn(ctx, nsPath, target) })
	}()
	for i := range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("hello %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil || string(got) != strings.ToUpper(msg) {
			t.Fatalf("through the forwarder: got %q, %v; want %q", got, err, strings.ToUpper(msg))
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := dialIn(context.Background(), "/proc/self/ns/nonexistent", target); err == nil {
		t.Fatal("dialIn into a missing namespace succeeded")
	}
}

// listenIn listens on an ephemeral loopback port inside the namespace at
// nsPath.
func listenIn(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer func() { _ = f.Close() }()
		if err := setns(f); err != nil {
			done <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("listening in %s: %v", nsPath, r.err)
	}
	return r.ln
}
