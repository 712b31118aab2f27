package controllers

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/wire/bootstrap"
	"github.com/serviceradar/sync-operator/workload"
)

// OnPrem onboarding: an OnPrem SyncService runs no pods here; its edge
// worker runs from the onboarding bundle Secret "<name>-onboarding" (the
// bootstrap config, an edge client certificate from the tenant's CA, the
// root CA), issued again when its identity, tenant CA or gateway address
// changes or its renewal is due. edgecerts.go reports the certificates the
// gateway accepts; edgerenewal.go answers the edge's own renewal requests.

// gatewayAddressAnnotation records the gateway address an onboarding bundle
// was rendered with: another address means the bundle is rendered again.
const gatewayAddressAnnotation = "integrations.serviceradar.io/gateway-address"

func (r *SyncServiceReconciler) reconcileOnPrem(ctx context.Context, ss *v1alpha1.SyncService, tenant *v1alpha1.Tenant, out *outcome) error {
	name := ss.Name + "-onboarding"
	out.onboarding = name
	cn, cnErr := identity.FormatCommonName(ss.Name, ss.Spec.Partition, tenant.Spec.Slug)
	if cnErr != nil {
		// The name cannot be an edge identity: a spec problem for the user, not a retry.
		out.ready, out.reason, out.message = false, v1alpha1.ReasonInvalidSpec, cnErr.Error()
		return nil //nolint:nilerr // reported in the Ready condition
	}
	if dup, err := r.duplicateIdentity(ctx, ss, tenant.Spec.Slug); err != nil {
		return err
	} else if dup != "" {
		out.ready, out.reason, out.message = false, v1alpha1.ReasonDuplicateIdentity, fmt.Sprintf(
			"SyncService %s of the same tenant has the same name and partition, so the same edge identity %s: neither is issued a certificate or served until one is renamed or deleted", dup, cn)
		return nil
	}
	address, serverName, reason, problem := r.edgeAddress(ss)
	if problem != "" {
		// An existing bundle is left as it is: it may be what an edge runs.
		out.ready, out.reason, out.message = false, reason, problem
		return nil
	}
	issuer := tenant.Status.CAFingerprint
	if issuer == "" {
		out.ready, out.reason, out.message = false, v1alpha1.ReasonTenantCAPending, fmt.Sprintf("waiting for the certificate authority of tenant %q", tenant.Spec.Slug)
		out.requeueIn(5 * time.Second)
		return nil
	}
	out.message = fmt.Sprintf("onboarding bundle in Secret %s for edge identity %s, reaching the gateway at %s", name, cn, address)
	// A bundle for another gateway address is issued again.
	s := certSecret{Key: types.NamespacedName{Namespace: ss.Namespace, Name: name}, Identity: cn, Issuer: issuer,
		Want: map[string]string{gatewayAddressAnnotation: address}}
	prev, err := s.read(ctx, r.Client)
	if err != nil {
		return err
	}
	if left, ok := s.renewIn(prev, r.now()); ok {
		out.requeueIn(left)
		out.edgeKnown = true
		out.edgeCerts, out.edgeSince = edgeStatus(prev.GetAnnotations(), ss.Status.EdgeCertificates, r.now())
		return nil
	}
	tca, err := r.Store.TenantCA(ctx, tenant.Spec.Slug)
	if err != nil {
		return err
	}
	if identity.KeyFingerprint(tca.Cert) != issuer {
		// The Tenant's status is behind its CA (or ahead of this read): issue
		// only under the CA the gateway trusts.
		out.ready, out.reason, out.message = false, v1alpha1.ReasonTenantCAPending, fmt.Sprintf("waiting for the certificate authority of tenant %q", tenant.Spec.Slug)
		out.requeueIn(5 * time.Second)
		return nil
	}
	root, err := r.Store.RootCA(ctx)
	if err != nil {
		return err
	}
	issued, err := tca.IssueEdgeClient(ss.Name, ss.Spec.Partition, tenant.Spec.Slug, r.EdgeLifetime)
	if err != nil {
		return err
	}
	// No bundle in place (the first, or its Secret deleted): a fresh
	// identity, and every certificate issued before it is refused.
	fresh := prev == nil
	if fresh {
		if err := issuedTooSoon(issued, ss.Status.EdgeCertificates); err != nil {
			out.notes = append(out.notes, err.Error())
			out.requeueIn(time.Second)
			return nil
		}
	}
	var prevAnn map[string]string
	if prev != nil {
		prevAnn = prev.GetAnnotations()
	}
	certAnn := edgeAnnotations(issued, prevAnn, fresh)
	out.edgeKnown = true
	out.edgeCerts, out.edgeSince = edgeStatus(certAnn, ss.Status.EdgeCertificates, r.now())
	boot := bootstrap.Config{
		GatewayAddress: address, ComponentID: ss.Name, Partition: ss.Spec.Partition, TenantSlug: tenant.Spec.Slug,
		Identity: bootstrap.FileIdentity("."),
	}
	boot.Identity.ServerName = serverName
	cfg, err := boot.JSON()
	if err != nil {
		return err
	}
	return r.issueCertSecret(ctx, ss, &s, issuedSecret{Issued: issued, CA: root, Type: corev1.SecretTypeOpaque,
		Labels:      map[string]string{platform.ManagedByLabel: platform.ManagedBy, workload.SyncServiceLabel: ss.Name},
		Annotations: certAnn, Data: map[string][]byte{"config.json": cfg}}, out)
}

// edgeAddress is the address an OnPrem SyncService's worker dials and the
// name it checks on the gateway's certificate (the host of that address), or
// why there is none usable: no address configured, or a host the gateway's
// certificate does not name (the worker would refuse the gateway).
func (r *SyncServiceReconciler) edgeAddress(ss *v1alpha1.SyncService) (address, serverName, reason, problem string) {
	address, field := ss.Spec.GatewayAddress, "spec.gatewayAddress"
	if address == "" {
		address, field = r.EdgeGatewayAddress, "the manager's --edge-gateway-address (chart gateway.external.address)"
	}
	if address == "" {
		return "", "", v1alpha1.ReasonEdgeGatewayAddressUnknown, fmt.Sprintf("no onboarding bundle: the address at which the edge worker reaches the gateway is unknown; "+
			"set spec.gatewayAddress, or the chart's gateway.external.address for every OnPrem SyncService (the in-cluster address %s is not reachable from an edge site)", r.GatewayAddress)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return "", "", v1alpha1.ReasonInvalidSpec, fmt.Sprintf("%s %q must be host:port", field, address)
	}
	if r.GatewayCertNames != nil && !slices.ContainsFunc(r.GatewayCertNames, func(n string) bool { return strings.EqualFold(n, host) }) {
		return "", "", v1alpha1.ReasonEdgeGatewayAddressNotOnCertificate, fmt.Sprintf("no onboarding bundle: the host %q of %s is not on the gateway's certificate (%s), so the edge worker would refuse the gateway; "+
			"add it to the chart's gateway.tls.dnsNames (manager --gateway-dns-names)", host, field, strings.Join(r.GatewayCertNames, ", "))
	}
	return address, host, "", ""
}
