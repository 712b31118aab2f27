// Command demokit prepares the processes of `make demo` from what the
// manager created in the local control plane (there is no kubelet, so the
// demo runs the gateway and the worker as processes):
//
//	demokit gateway-cert --out DIR   writes the gateway's certificate files from the Secret the manager keeps
//	demokit worker --out DIR ...     writes the worker's bootstrap.json and identity
//	                                 files from the ConfigMap and Secret the manager rendered
//	demokit pod-ready ...            reports the worker Deployment's pod ready, as the
//	                                 kubelet would for the process the demo runs in its place
//	demokit armis --secret-key K ... serves the Armis emulator, the second source of
//	                                 DEMO_OVERLAP (see armis)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workload"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demokit gateway-cert|worker|pod-ready|armis [flags]")
		os.Exit(2)
	}
	if os.Args[1] == "armis" {
		if err := armis(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "demokit:", err)
			os.Exit(1)
		}
		return
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	out := fs.String("out", "", "output folder")
	ns := fs.String("namespace", "serviceradar-system", "operator namespace")
	ss := fs.String("syncservice", "platform-sync", "SyncService of the worker (in the operator namespace)")
	tenant := fs.String("tenant", "acme", "tenant slug the worker serves")
	gateway := fs.String("gateway-address", "", "gateway address to put in the bootstrap (default: the rendered one)")
	_ = fs.Parse(os.Args[2:])
	if *out == "" && os.Args[1] != "pod-ready" {
		fmt.Fprintln(os.Stderr, "--out is required")
		os.Exit(2)
	}
	if err := run(os.Args[1], *ns, *ss, *tenant, *gateway, *out); err != nil {
		fmt.Fprintln(os.Stderr, "demokit:", err)
		os.Exit(1)
	}
}

func run(cmd, ns, ss, tenant, gateway, out string) error {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = appsv1.AddToScheme(scheme)
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch cmd {
	case "gateway-cert":
		return gatewayCert(ctx, c, ns, out)
	case "worker":
		return worker(ctx, c, ns, ss, tenant, gateway, out)
	case "pod-ready":
		return podReady(ctx, c, ns, workload.Name("sync", ss, tenant))
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// gatewayCert writes the gateway's certificate files from the Secret the
// manager keeps (--gateway-tls-secret), as the gateway Pod would mount it.
func gatewayCert(ctx context.Context, c client.Client, ns, out string) error {
	var sec corev1.Secret
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sync-gateway-tls"}, &sec) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the manager has not issued Secret %s/sync-gateway-tls: %w", ns, err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	for key, file := range map[string]string{corev1.TLSCertKey: "tls.crt", corev1.TLSPrivateKeyKey: "tls.key", "ca.crt": "ca.crt"} {
		if err := os.WriteFile(filepath.Join(out, file), sec.Data[key], 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", file, err)
		}
	}
	fmt.Println(filepath.Join(out, "tls.crt"))
	return nil
}

// worker writes the rendered bootstrap with local identity paths.
func worker(ctx context.Context, c client.Client, ns, ss, tenant, gateway, out string) error {
	name := workload.Name("sync", ss, tenant)
	var cm corev1.ConfigMap
	var sec corev1.Secret
	deadline := time.Now().Add(time.Minute)
	for {
		errCM := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm)
		errSec := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: workload.Name("sync", ss, tenant, "svid")}, &sec)
		if errCM == nil && errSec == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager has not rendered the worker of %s for %s: %w", ss, tenant, errors.Join(errCM, errSec))
		}
		time.Sleep(time.Second)
	}
	var b bootstrap.Config
	if err := json.Unmarshal([]byte(cm.Data[bootstrap.FileName]), &b); err != nil {
		return fmt.Errorf("rendered bootstrap: %w", err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	for key, file := range map[string]string{corev1.TLSCertKey: "tls.crt", corev1.TLSPrivateKeyKey: "tls.key", "ca.crt": "ca.crt"} {
		if err := os.WriteFile(filepath.Join(out, file), sec.Data[key], 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", file, err)
		}
	}
	b.Identity = bootstrap.FileIdentity(out)
	if gateway != "" {
		b.GatewayAddress = gateway
	}
	raw, err := b.JSON()
	if err != nil {
		return err
	}
	path := filepath.Join(out, bootstrap.FileName)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("writing bootstrap: %w", err)
	}
	fmt.Println(path)
	return nil
}

// reportReady writes the ready status once.
func reportReady(ctx context.Context, c client.Client, ns, name string) error {
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	d.Status.ObservedGeneration = d.Generation
	d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1, 1
	if err := c.Status().Update(ctx, &d); err != nil {
		return fmt.Errorf("updating status: %w", err)
	}
	return nil
}

// podReady writes the status a kubelet and the Deployment controller would
// write once the worker's one replica runs: the demo runs that replica as a
// process because there is no node here.
func podReady(ctx context.Context, c client.Client, ns, name string) error {
	// The manager writes the Deployment after the bootstrap and may apply it
	// again meanwhile: wait for it and retry on conflicts.
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = reportReady(ctx, c, ns, name)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("reporting Deployment %s/%s ready: %w (last: %w)", ns, name, err, last)
	}
	return nil
}
