package controllers

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity/ca"
)

// Annotations of an onboarding Secret recording the edge certificate in it,
// so that the manager, which reads only Secrets' metadata, can report it
// and carry the identity's start over renewals.
const (
	edgeSerialAnnotation    = "integrations.serviceradar.io/serial"
	edgeNotBeforeAnnotation = "integrations.serviceradar.io/not-before"
	edgeNotAfterAnnotation  = "integrations.serviceradar.io/not-after"
	// edgeSinceAnnotation is status.edgeIdentitySince: the NotBefore of the
	// certificate issued when no bundle was in place, carried over renewals.
	edgeSinceAnnotation = "integrations.serviceradar.io/identity-since"
)

// maxEdgeCertificates bounds status.edgeCertificates (its CRD MaxItems).
const maxEdgeCertificates = 4

// edgeAnnotations records an issued edge certificate and the identity's
// start: since from the Secret it replaces (prev, nil when there was none,
// "" for a Secret written before identities were tracked), or the new
// certificate's NotBefore for a fresh identity.
func edgeAnnotations(issued *ca.Issued, prev map[string]string, fresh bool) map[string]string {
	c := issued.Cert
	ann := map[string]string{
		edgeSerialAnnotation:    c.SerialNumber.Text(16),
		edgeNotBeforeAnnotation: c.NotBefore.UTC().Format(time.RFC3339),
		edgeNotAfterAnnotation:  c.NotAfter.UTC().Format(time.RFC3339),
	}
	if fresh {
		ann[edgeSinceAnnotation] = ann[edgeNotBeforeAnnotation]
	} else if since := prev[edgeSinceAnnotation]; since != "" {
		ann[edgeSinceAnnotation] = since
	}
	return ann
}

// edgeStatus derives status.edgeCertificates and status.edgeIdentitySince
// from the onboarding Secret's annotations (the current certificate) and
// the previously reported certificates: those the gateway still accepts
// (not expired, not issued before the identity's start), newest first.
func edgeStatus(ann map[string]string, reported []v1alpha1.EdgeCertificate, now time.Time) ([]v1alpha1.EdgeCertificate, *metav1.Time) {
	var since *metav1.Time
	if t, ok := parseTime(ann[edgeSinceAnnotation]); ok {
		since = &metav1.Time{Time: t}
	}
	var out []v1alpha1.EdgeCertificate
	nb, okB := parseTime(ann[edgeNotBeforeAnnotation])
	na, okA := parseTime(ann[edgeNotAfterAnnotation])
	if serial := ann[edgeSerialAnnotation]; serial != "" && okB && okA {
		out = append(out, v1alpha1.EdgeCertificate{Serial: serial, NotBefore: metav1.Time{Time: nb}, NotAfter: metav1.Time{Time: na}})
	}
	for _, c := range reported {
		if !c.NotAfter.After(now) || (since != nil && c.NotBefore.Before(since)) ||
			slices.ContainsFunc(out, func(o v1alpha1.EdgeCertificate) bool { return o.Serial == c.Serial }) {
			continue
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b v1alpha1.EdgeCertificate) int { return b.NotBefore.Compare(a.NotBefore.Time) })
	if len(out) > maxEdgeCertificates {
		out = out[:maxEdgeCertificates]
	}
	return out, since
}

// issuedTooSoon reports whether a fresh identity's certificate would start
// in the same second (the resolution of certificate times) as one already
// reported: the gateway could not tell them apart by issuance time, so the
// issuance waits a second. (A reported certificate dated later than that,
// by a clock set back, would stay accepted until it expires.)
func issuedTooSoon(issued *ca.Issued, reported []v1alpha1.EdgeCertificate) error {
	for _, c := range reported {
		if d := issued.Cert.NotBefore.Sub(c.NotBefore.Time); d <= 0 && d > -time.Second {
			return fmt.Errorf("a new edge identity must start after certificate %s (%s)", c.Serial, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
