package controllers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/identity/renewal"
)

// maxAnsweredRequests bounds status.certificateRenewal.answeredRequests (its
// CRD MaxItems). An older request sent again is refused all the same: its
// presented certificate has expired by then, or been renewed past.
const maxAnsweredRequests = 16

// pendingRequest is the recorded certificate request the manager has not
// answered yet, or nil. A request is answered when the answer names its
// id and its requestedAt: the same request recorded again (a replay) is a
// new one, and is refused.
func pendingRequest(st *v1alpha1.SyncServiceStatus) *v1alpha1.EdgeCertificateRequest {
	req, ans := st.CertificateRequest, st.CertificateRenewal
	if req == nil || (ans != nil && ans.RequestID == req.ID && ans.RequestedAt.UnixMicro() == req.RequestedAt.UnixMicro()) {
		return nil
	}
	return req
}

// answerRenewal answers the SyncService's pending certificate request, if
// any, into out.renewal: a certificate for the request's key signed by the
// tenant's CA with the edge template, or a refusal. It signs only for an
// OnPrem SyncService that is not paused and whose tenant and identity are in
// order (served), only exactly the identity of the certificate that
// presented the request and proved it, and never a request answered before.
func (r *SyncServiceReconciler) answerRenewal(ctx context.Context, ss *v1alpha1.SyncService, tenant *v1alpha1.Tenant, served bool, out *outcome) error {
	req := pendingRequest(&ss.Status)
	if req == nil {
		return nil
	}
	if r.Reader != nil {
		// The cache may not have this manager's own answer yet: sign only
		// from the current object.
		live := &v1alpha1.SyncService{}
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(ss), live); err != nil {
			return fmt.Errorf("reading SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
		}
		if live.ResourceVersion != ss.ResourceVersion {
			out.requeueIn(time.Second)
			return nil
		}
	}
	now := r.now()
	ans := &v1alpha1.EdgeCertificateRenewal{RequestID: req.ID, RequestedAt: req.RequestedAt, AnsweredAt: metav1.NewTime(now).Rfc3339Copy()}
	if prev := ss.Status.CertificateRenewal; prev != nil {
		ans.AnsweredRequests = append([]string{prev.RequestID}, prev.AnsweredRequests...)
		ans.AnsweredRequests = slices.Compact(ans.AnsweredRequests)
		if len(ans.AnsweredRequests) > maxAnsweredRequests {
			ans.AnsweredRequests = ans.AnsweredRequests[:maxAnsweredRequests]
		}
	}
	issued, err := r.signRenewal(ctx, ss, tenant, served, req, ans.AnsweredRequests, now, out)
	var refusal *renewal.Refusal
	switch {
	case errors.As(err, &refusal):
		ans.Reason, ans.Message = refusal.Reason, refusal.Message
	case err != nil:
		return err
	default:
		ans.Issued, ans.Reason = true, renewal.ReasonIssued
		ans.Certificate = string(issued.CertPEM())
		ans.Serial = issued.Cert.SerialNumber.Text(16)
		ans.NotAfter = &metav1.Time{Time: issued.Cert.NotAfter}
		ans.Message = fmt.Sprintf("issued certificate %s for the edge's new key, valid until %s", ans.Serial, issued.Cert.NotAfter.UTC().Format(time.RFC3339))
		if !out.edgeKnown {
			out.edgeKnown, out.edgeCerts, out.edgeSince = true, ss.Status.EdgeCertificates, ss.Status.EdgeIdentitySince
		}
		out.edgeCerts = append([]v1alpha1.EdgeCertificate{{Serial: ans.Serial, NotBefore: metav1.Time{Time: issued.Cert.NotBefore}, NotAfter: *ans.NotAfter}},
			out.edgeCerts...)
		slices.SortStableFunc(out.edgeCerts, func(a, b v1alpha1.EdgeCertificate) int { return b.NotBefore.Compare(a.NotBefore.Time) })
		if len(out.edgeCerts) > maxEdgeCertificates {
			out.edgeCerts = out.edgeCerts[:maxEdgeCertificates]
		}
	}
	out.renewal = ans
	if r.Events != nil {
		if ans.Issued {
			r.Events.Eventf(ss, nil, corev1.EventTypeNormal, "CertificateRenewed", "Renew", "%s", ans.Message)
		} else {
			r.Events.Eventf(ss, nil, corev1.EventTypeWarning, "CertificateRenewalRefused", "Renew", "%s: %s", ans.Reason, ans.Message)
		}
	}
	return nil
}

// signRenewal checks a request and signs it, or returns a *renewal.Refusal.
func (r *SyncServiceReconciler) signRenewal(ctx context.Context, ss *v1alpha1.SyncService, tenant *v1alpha1.Tenant, served bool,
	req *v1alpha1.EdgeCertificateRequest, answered []string, now time.Time, out *outcome,
) (*ca.Issued, error) {
	switch {
	case ss.Spec.ServiceType != v1alpha1.ServiceTypeOnPrem:
		return nil, &renewal.Refusal{Reason: renewal.ReasonNotServed, Message: "only OnPrem SyncServices renew edge certificates"}
	case ss.Spec.Paused:
		return nil, &renewal.Refusal{Reason: renewal.ReasonNotServed, Message: "the SyncService is paused: no certificate is issued until it is resumed"}
	case !served || tenant == nil || tenant.Status.CAFingerprint == "":
		return nil, &renewal.Refusal{Reason: renewal.ReasonNotServed, Message: "the SyncService is not served (" + out.reason + "): no certificate is issued"}
	}
	_, id, err := renewal.ParseRequest([]byte(req.CSR))
	if err != nil {
		return nil, err
	}
	if id != req.ID {
		return nil, &renewal.Refusal{Reason: renewal.ReasonMalformed, Message: "the recorded request id is not the SHA-256 of the request"}
	}
	if slices.Contains(answered, id) {
		return nil, &renewal.Refusal{Reason: renewal.ReasonReplay, Message: fmt.Sprintf("request %s was answered before; a renewal needs a new key and request", id)}
	}
	proof, err := base64.StdEncoding.DecodeString(req.Proof)
	if err != nil {
		return nil, &renewal.Refusal{Reason: renewal.ReasonInvalidProof, Message: "the proof is not base64"}
	}
	cn, err := identity.FormatCommonName(ss.Name, ss.Spec.Partition, tenant.Spec.Slug)
	if err != nil {
		return nil, &renewal.Refusal{Reason: renewal.ReasonNotServed, Message: err.Error()}
	}
	tca, err := r.Store.TenantCA(ctx, tenant.Spec.Slug)
	if err != nil {
		return nil, fmt.Errorf("renewing the edge certificate of SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
	}
	if identity.KeyFingerprint(tca.Cert) != tenant.Status.CAFingerprint {
		return nil, &renewal.Refusal{Reason: renewal.ReasonNotServed, Message: "the tenant's certificate authority is being replaced; send the request again"}
	}
	since := ss.Status.EdgeIdentitySince
	if out.edgeKnown {
		since = out.edgeSince
	}
	p := renewal.Presented{TenantCA: tca.Cert, CommonName: cn, Now: now}
	if since != nil {
		p.Since = since.Time
	}
	csr, err := renewal.Check(p, []byte(req.CSR), []byte(req.PresentedCertificate), proof)
	if err != nil {
		return nil, err //nolint:wrapcheck // a *renewal.Refusal
	}
	issued, err := tca.IssueEdgeClientForKey(csr.PublicKey, ss.Name, ss.Spec.Partition, tenant.Spec.Slug, r.EdgeLifetime)
	if err != nil {
		return nil, fmt.Errorf("signing the edge certificate request of SyncService %s/%s: %w", ss.Namespace, ss.Name, err)
	}
	return issued, nil
}
