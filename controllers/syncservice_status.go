package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/statusapply"
)

// OnlineWindow is how recent a heartbeat must be for a SyncService to be Online.
const OnlineWindow = 2 * time.Minute

// phase is a SyncService's liveness at now from the gateway's last
// heartbeat (status.lastHeartbeatAt): Online within OnlineWindow, Degraded
// then when a worker of a SyncService that is not paused has no ready pod,
// Offline otherwise. recheck is when it turns Offline without another
// heartbeat (zero when it is Offline already): when to look again.
func phase(ss *v1alpha1.SyncService, workers []v1alpha1.WorkerStatus, now time.Time) (p v1alpha1.Phase, recheck time.Duration) {
	hb := ss.Status.LastHeartbeatAt
	if hb == nil {
		return v1alpha1.PhaseOffline, 0
	}
	age := now.Sub(hb.Time)
	if age >= OnlineWindow {
		return v1alpha1.PhaseOffline, 0
	}
	recheck = OnlineWindow - age + time.Second
	for _, w := range workers {
		if w.ReadyReplicas == 0 && !ss.Spec.Paused {
			return v1alpha1.PhaseDegraded, recheck
		}
	}
	return v1alpha1.PhaseOnline, recheck
}

// syncServiceStatus is the part of a SyncService's status the manager owns
// after a reconcile found out, at now: phase, conditions (Ready, Available,
// Progressing, Degraded and, once an edge asked for a certificate,
// CertificateRenewal), workers, onboarding Secret and edge certificates.
// changed says whether it differs from ss's status; recheck is when the
// phase changes without an event (phase). It is pure: the reconcile writes
// the status when changed and requeues after recheck.
func syncServiceStatus(ss *v1alpha1.SyncService, out *outcome, now time.Time) (st v1alpha1.SyncServiceStatus, changed bool, recheck time.Duration) {
	p, recheck := phase(ss, out.workers, now)
	gen := ss.Generation
	starting := 0
	for _, w := range out.workers {
		if w.ReadyReplicas == 0 {
			starting++
		}
	}
	progressReason, progressMsg := v1alpha1.ReasonWorkersReady, "all workers are ready"
	switch {
	case ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem:
		progressReason, progressMsg = v1alpha1.ReasonNoWorkers, "on-prem workers run at the tenant's edge"
	case len(out.workers) == 0:
		progressReason, progressMsg = v1alpha1.ReasonNoWorkers, "no tenant has sources assigned"
	case starting > 0:
		progressReason, progressMsg = v1alpha1.ReasonWorkersStarting, fmt.Sprintf("%d of %d workers are not ready", starting, len(out.workers))
	}
	availReason, availMsg := v1alpha1.ReasonNoHeartbeat, fmt.Sprintf("no heartbeat within %s", OnlineWindow)
	if p != v1alpha1.PhaseOffline {
		availReason, availMsg = v1alpha1.ReasonHeartbeat, fmt.Sprintf("heartbeat within %s", OnlineWindow)
	}
	want := []metav1.Condition{
		newCondition(v1alpha1.ConditionReady, out.ready, out.reason, out.message, gen),
		newCondition(v1alpha1.ConditionAvailable, p != v1alpha1.PhaseOffline, availReason, availMsg, gen),
		newCondition(v1alpha1.ConditionProgressing, progressReason == v1alpha1.ReasonWorkersStarting, progressReason, progressMsg, gen),
		newCondition(v1alpha1.ConditionDegraded, p == v1alpha1.PhaseDegraded, string(p), "phase "+string(p), gen),
	}
	// The last answer to a certificate request is kept (status is applied
	// whole under one field manager): a new one, or the one in place.
	renewed := out.renewal
	if renewed == nil {
		renewed = ss.Status.CertificateRenewal
	}
	if renewed != nil {
		want = append(want, newCondition(v1alpha1.ConditionCertificateRenewal, renewed.Issued, renewed.Reason, renewed.Message, gen))
	}
	conds, condsChanged := setConditions(ss.Status.Conditions, now, want...)
	edgeCerts, edgeSince := out.edgeCerts, out.edgeSince
	if !out.edgeKnown {
		// Not reached this time (a refusal or a wait): reported as before.
		edgeCerts, edgeSince = ss.Status.EdgeCertificates, ss.Status.EdgeIdentitySince
	}
	st = v1alpha1.SyncServiceStatus{
		ObservedGeneration: gen, Phase: p, Conditions: conds,
		Workers: out.workers, WorkersReady: workersReady(ss, out.workers), OnboardingSecretName: out.onboarding,
		EdgeCertificates: edgeCerts, EdgeIdentitySince: edgeSince, CertificateRenewal: renewed,
	}
	old := &ss.Status
	changed = out.renewal != nil || condsChanged || old.ObservedGeneration != gen || old.Phase != p ||
		old.OnboardingSecretName != st.OnboardingSecretName || !slices.Equal(old.Workers, st.Workers) || old.WorkersReady != st.WorkersReady ||
		!sameEdgeCerts(old.EdgeCertificates, edgeCerts) || !old.EdgeIdentitySince.Equal(edgeSince)
	return st, changed, recheck
}

// writeStatus applies the status the manager owns when it changed, and
// requeues for the next change of phase.
func (r *SyncServiceReconciler) writeStatus(ctx context.Context, ss *v1alpha1.SyncService, out *outcome) error {
	st, changed, recheck := syncServiceStatus(ss, out, r.now())
	out.requeueIn(recheck)
	if !changed {
		return nil
	}
	// Only onto the object read: a reconcile working from a stale cache
	// (the manager's own write not seen yet) would otherwise put back an
	// older certificate answer or list (a Conflict instead).
	return statusapply.Apply(ctx, r.Client, FieldOwner, &v1alpha1.SyncService{ //nolint:wrapcheck // it names the object
		ObjectMeta: metav1.ObjectMeta{Namespace: ss.Namespace, Name: ss.Name, ResourceVersion: ss.ResourceVersion},
		Status:     st,
	})
}

// workersReady is status.workersReady: ready worker pods over desired ones,
// summed over the service's worker Deployments; empty for OnPrem.
func workersReady(ss *v1alpha1.SyncService, workers []v1alpha1.WorkerStatus) string {
	if ss.Spec.ServiceType == v1alpha1.ServiceTypeOnPrem {
		return ""
	}
	var ready, desired int32
	for _, w := range workers {
		ready += w.ReadyReplicas
		desired += w.Replicas
	}
	return fmt.Sprintf("%d/%d", ready, desired)
}

// sameEdgeCerts compares reported edge certificates at the second
// resolution status times have.
func sameEdgeCerts(a, b []v1alpha1.EdgeCertificate) bool {
	return slices.EqualFunc(a, b, func(x, y v1alpha1.EdgeCertificate) bool {
		return x.Serial == y.Serial && x.NotBefore.Equal(&y.NotBefore) && x.NotAfter.Equal(&y.NotAfter)
	})
}
