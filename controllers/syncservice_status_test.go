package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// The SyncService's phase and conditions are a pure function of what the
// reconcile found and the heartbeat the gateway recorded.
func TestSyncServiceStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	beat := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }
	ready := []v1alpha1.WorkerStatus{{Tenant: "acme", Deployment: "w-acme", ReadyReplicas: 1, Replicas: 1}}
	starting := []v1alpha1.WorkerStatus{{Tenant: "acme", Deployment: "w-acme", Replicas: 1}}
	ok := func(workers []v1alpha1.WorkerStatus) *outcome {
		return &outcome{ready: true, reason: v1alpha1.ReasonReconciled, message: "fine", workers: workers}
	}
	type cond struct {
		status metav1.ConditionStatus
		reason string
	}
	for _, tc := range []struct {
		name      string
		onPrem    bool
		paused    bool
		heartbeat *metav1.Time
		out       *outcome
		phase     v1alpha1.Phase
		recheck   time.Duration
		want      map[string]cond
	}{
		{name: "no heartbeat", out: ok(ready), phase: v1alpha1.PhaseOffline, want: map[string]cond{
			v1alpha1.ConditionReady:       {metav1.ConditionTrue, v1alpha1.ReasonReconciled},
			v1alpha1.ConditionAvailable:   {metav1.ConditionFalse, v1alpha1.ReasonNoHeartbeat},
			v1alpha1.ConditionProgressing: {metav1.ConditionFalse, v1alpha1.ReasonWorkersReady},
			v1alpha1.ConditionDegraded:    {metav1.ConditionFalse, string(v1alpha1.PhaseOffline)},
		}},
		{name: "a recent heartbeat, workers ready", heartbeat: beat(30 * time.Second), out: ok(ready), phase: v1alpha1.PhaseOnline,
			recheck: 91 * time.Second, want: map[string]cond{
				v1alpha1.ConditionAvailable: {metav1.ConditionTrue, v1alpha1.ReasonHeartbeat},
				v1alpha1.ConditionDegraded:  {metav1.ConditionFalse, string(v1alpha1.PhaseOnline)},
			}},
		{name: "a heartbeat at the window's edge", heartbeat: beat(OnlineWindow), out: ok(ready), phase: v1alpha1.PhaseOffline, want: map[string]cond{
			v1alpha1.ConditionAvailable: {metav1.ConditionFalse, v1alpha1.ReasonNoHeartbeat},
		}},
		{name: "a heartbeat while a worker starts", heartbeat: beat(time.Minute), out: ok(starting), phase: v1alpha1.PhaseDegraded,
			recheck: 61 * time.Second, want: map[string]cond{
				v1alpha1.ConditionAvailable:   {metav1.ConditionTrue, v1alpha1.ReasonHeartbeat},
				v1alpha1.ConditionProgressing: {metav1.ConditionTrue, v1alpha1.ReasonWorkersStarting},
				v1alpha1.ConditionDegraded:    {metav1.ConditionTrue, string(v1alpha1.PhaseDegraded)},
			}},
		{name: "paused: a worker without a ready pod is no fault", paused: true, heartbeat: beat(time.Minute), out: ok(starting),
			phase: v1alpha1.PhaseOnline, recheck: 61 * time.Second, want: map[string]cond{
				v1alpha1.ConditionDegraded: {metav1.ConditionFalse, string(v1alpha1.PhaseOnline)},
			}},
		{name: "no tenant has sources", out: ok(nil), phase: v1alpha1.PhaseOffline, want: map[string]cond{
			v1alpha1.ConditionProgressing: {metav1.ConditionFalse, v1alpha1.ReasonNoWorkers},
		}},
		{name: "OnPrem runs no workers here", onPrem: true, heartbeat: beat(time.Second), out: ok(nil), phase: v1alpha1.PhaseOnline,
			recheck: OnlineWindow, want: map[string]cond{
				v1alpha1.ConditionProgressing: {metav1.ConditionFalse, v1alpha1.ReasonNoWorkers},
			}},
		{name: "not ready", out: &outcome{reason: v1alpha1.ReasonTenantNotFound, message: "no tenant"}, phase: v1alpha1.PhaseOffline,
			want: map[string]cond{v1alpha1.ConditionReady: {metav1.ConditionFalse, v1alpha1.ReasonTenantNotFound}}},
		{name: "a certificate request answered", onPrem: true, out: &outcome{ready: true, reason: v1alpha1.ReasonReconciled,
			renewal: &v1alpha1.EdgeCertificateRenewal{RequestID: "r1", Reason: "KeyReused", Message: "no"}}, phase: v1alpha1.PhaseOffline,
			want: map[string]cond{v1alpha1.ConditionCertificateRenewal: {metav1.ConditionFalse, "KeyReused"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Spec: v1alpha1.SyncServiceSpec{Paused: tc.paused,
				ServiceType: v1alpha1.ServiceTypeSaaS}, Status: v1alpha1.SyncServiceStatus{LastHeartbeatAt: tc.heartbeat}}
			if tc.onPrem {
				ss.Spec.ServiceType = v1alpha1.ServiceTypeOnPrem
			}
			st, changed, recheck := syncServiceStatus(ss, tc.out, now)
			if st.Phase != tc.phase || recheck != tc.recheck || !changed {
				t.Fatalf("phase %s, recheck %s, changed %v; want %s, %s, true", st.Phase, recheck, changed, tc.phase, tc.recheck)
			}
			for typ, want := range tc.want {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil || c.Status != want.status || c.Reason != want.reason || c.ObservedGeneration != 3 || !c.LastTransitionTime.Time.Equal(now) {
					t.Fatalf("condition %s = %+v, want %s %s at generation 3 since now", typ, c, want.status, want.reason)
				}
			}
			if st.LastHeartbeatAt != nil || st.CertificateRequest != nil || st.Version != "" {
				t.Fatalf("the manager's status carries the gateway's fields: %+v", st)
			}

			// Applied and read back, the same outcome changes nothing, and
			// conditions keep their transition times.
			ss.Status.ObservedGeneration, ss.Status.Phase, ss.Status.Conditions = st.ObservedGeneration, st.Phase, st.Conditions
			ss.Status.Workers, ss.Status.WorkersReady, ss.Status.OnboardingSecretName = st.Workers, st.WorkersReady, st.OnboardingSecretName
			ss.Status.CertificateRenewal = st.CertificateRenewal
			again := *tc.out
			again.renewal = nil
			st2, changed, _ := syncServiceStatus(ss, &again, now.Add(time.Second))
			if changed {
				t.Fatalf("a steady state is a change: %+v", st2)
			}
			for _, c := range st2.Conditions {
				if !c.LastTransitionTime.Time.Equal(now) {
					t.Fatalf("condition %s moved its transition time to %s", c.Type, c.LastTransitionTime)
				}
			}
		})
	}
}
