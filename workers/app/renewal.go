package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/serviceradar/sync-operator/identity/renewal"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workers/uplink"
)

// edgeRenewer is the renewer of a worker whose identity is an edge
// certificate in files (an onboarding bundle): it renews that certificate
// over the ControlStream and rewrites the files. Other workers (SVIDs from
// the Workload API or from files the manager renews in a Secret) get nil.
// trigger, when not nil, asks for a renewal at each receive (tests, demos).
func edgeRenewer(ctx context.Context, b bootstrap.Config, trigger <-chan struct{}) (uplink.Renewer, error) {
	if b.Identity.Source != bootstrap.IdentityFiles {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(b.Identity.CertFile, b.Identity.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the worker's certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing the worker's certificate %s: %w", b.Identity.CertFile, err)
	}
	if len(leaf.URIs) > 0 {
		return nil, nil // an SVID
	}
	f := &renewal.Files{CertFile: b.Identity.CertFile, KeyFile: b.Identity.KeyFile}
	if trigger != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-trigger:
					if !ok {
						return
					}
					f.Trigger()
				}
			}
		}()
	}
	return f, nil
}
