package argocdhealth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
)

// gen is the metadata.generation of every sample object.
const gen = int64(3)

var (
	t0 = metav1.NewTime(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	t1 = metav1.NewTime(time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC))
)

func cond(typ string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: t0}
}

// setCond replaces or adds a condition of the same type.
func setCond(conds []metav1.Condition, c metav1.Condition) []metav1.Condition {
	for i := range conds {
		if conds[i].Type == c.Type {
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

func dropCond(conds []metav1.Condition, typ string) []metav1.Condition {
	out := conds[:0]
	for _, c := range conds {
		if c.Type != typ {
			out = append(out, c)
		}
	}
	return out
}

// toObj converts a typed object the way Argo CD sees it: as unstructured
// content, with integers as int64 and times as RFC 3339 strings.
func toObj(t *testing.T, o runtime.Object) map[string]any {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// noStatus drops the status, as on an object the operator has not written yet.
func noStatus(m map[string]any) { delete(m, "status") }

// healthCase is one sample object and the health it must get. mutate edits
// the kind's healthy base object; raw, when set, edits the unstructured form.
type healthCase[T runtime.Object] struct {
	name    string
	mutate  func(T)
	raw     func(map[string]any)
	status  string
	message string
}

func runCases[T runtime.Object](t *testing.T, kind string, base func() T, cases []healthCase[T]) {
	t.Helper()
	script, err := ReadScript(kind)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			if tc.mutate != nil {
				tc.mutate(o)
			}
			m := toObj(t, o)
			if tc.raw != nil {
				tc.raw(m)
			}
			got, err := Run(script, m)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status || got.Message != tc.message {
				t.Errorf("health = %s %q\nwant     %s %q", got.Status, got.Message, tc.status, tc.message)
			}
		})
	}
}

func baseTenant() *v1alpha1.Tenant {
	return &v1alpha1.Tenant{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Tenant"},
		ObjectMeta: metav1.ObjectMeta{Name: "acme", Generation: gen},
		Spec:       v1alpha1.TenantSpec{Slug: "acme"},
		Status: v1alpha1.TenantStatus{
			ObservedGeneration: gen,
			TenantID:           "0b8e2c1a-6c55-5b7e-9a1f-3d2b9c7e4f10",
			Namespaces:         []string{"acme"},
			Conditions: []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "tenant ID and certificate authority are in place"),
			},
		},
	}
}

func TestTenantHealth(t *testing.T) {
	type tn = *v1alpha1.Tenant
	runCases(t, "Tenant", baseTenant, []healthCase[tn]{
		{
			name:    "no status",
			raw:     noStatus,
			status:  "Progressing",
			message: "Waiting for the operator to report status",
		},
		{
			name:    "stale observedGeneration",
			mutate:  func(o tn) { o.Status.ObservedGeneration = gen - 1 },
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 2)",
		},
		{
			name:    "status without observedGeneration",
			mutate:  func(o tn) { o.Status = v1alpha1.TenantStatus{TenantID: "0b8e2c1a-6c55-5b7e-9a1f-3d2b9c7e4f10"} },
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 0)",
		},
		{
			name:    "stale Ready condition",
			mutate:  func(o tn) { o.Status.Conditions[0].ObservedGeneration = gen - 1 },
			status:  "Progressing",
			message: "Waiting for the operator to update the Ready condition to generation 3 (it is for generation 2)",
		},
		{
			name:    "Ready True",
			status:  "Healthy",
			message: "Reconciled: tenant ID and certificate authority are in place",
		},
		{
			name: "Ready False",
			mutate: func(o tn) {
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, "ReservedSlug", `slug "platform" is reserved for the platform tenant`)
			},
			status:  "Degraded",
			message: `ReservedSlug: slug "platform" is reserved for the platform tenant`,
		},
		{
			name:    "Ready False without reason or message",
			mutate:  func(o tn) { o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, "", "") },
			status:  "Degraded",
			message: "Ready is False",
		},
		{
			name: "Ready Unknown",
			mutate: func(o tn) {
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionUnknown, "Reconciling", "creating the certificate authority")
			},
			status:  "Progressing",
			message: "Reconciling: creating the certificate authority",
		},
		{
			name:    "Ready Unknown without reason or message",
			mutate:  func(o tn) { o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionUnknown, "", "") },
			status:  "Progressing",
			message: "Ready is Unknown",
		},
		{
			name:    "no Ready condition",
			mutate:  func(o tn) { o.Status.Conditions = nil },
			status:  "Progressing",
			message: "Waiting for the Ready condition",
		},
		{
			name: "only other conditions",
			mutate: func(o tn) {
				o.Status.Conditions = []metav1.Condition{cond("Other", metav1.ConditionTrue, "Fine", "")}
			},
			status:  "Progressing",
			message: "Waiting for the Ready condition",
		},
		{
			name:    "no metadata.generation",
			raw:     func(m map[string]any) { delete(m["metadata"].(map[string]any), "generation") },
			status:  "Healthy",
			message: "Reconciled: tenant ID and certificate authority are in place",
		},
		{
			name: "generations as json.Number",
			raw: func(m map[string]any) {
				m["metadata"].(map[string]any)["generation"] = json.Number("3")
				m["status"].(map[string]any)["observedGeneration"] = json.Number("3")
			},
			status:  "Healthy",
			message: "Reconciled: tenant ID and certificate authority are in place",
		},
		{
			name:    "generations as float64",
			raw:     func(m map[string]any) { m["status"].(map[string]any)["observedGeneration"] = float64(2) },
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 2)",
		},
	})
}

func baseSyncService() *v1alpha1.SyncService {
	return &v1alpha1.SyncService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SyncService"},
		ObjectMeta: metav1.ObjectMeta{Name: "sync", Namespace: "acme", Generation: gen},
		Spec: v1alpha1.SyncServiceSpec{
			ServiceType: v1alpha1.ServiceTypeSaaS,
			Partition:   v1alpha1.DefaultPartition,
			Identity:    v1alpha1.IdentitySpec{Provider: v1alpha1.IdentityProviderSPIRE},
		},
		Status: v1alpha1.SyncServiceStatus{
			ObservedGeneration: gen,
			Phase:              v1alpha1.PhaseOnline,
			LastHeartbeatAt:    &t1,
			Version:            "1.4.0",
			Workers: []v1alpha1.WorkerStatus{
				{Tenant: "acme", Deployment: "sync-acme", ComponentID: "sync-acme", ReadyReplicas: 1},
			},
			Conditions: []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "1 worker(s) for tenants [acme]"),
				cond(v1alpha1.ConditionAvailable, metav1.ConditionTrue, "HeartbeatReceived", "heartbeat within 2m0s"),
				cond(v1alpha1.ConditionProgressing, metav1.ConditionFalse, "WorkersReady", "all workers are ready"),
				cond(v1alpha1.ConditionDegraded, metav1.ConditionFalse, "Online", "phase Online"),
			},
		},
	}
}

// offline makes a service Offline as the controller does once no heartbeat
// arrived within the online window.
func offline(o *v1alpha1.SyncService) {
	o.Status.Phase = v1alpha1.PhaseOffline
	o.Status.Conditions = setCond(o.Status.Conditions,
		cond(v1alpha1.ConditionAvailable, metav1.ConditionFalse, "NoHeartbeat", "no heartbeat within 2m0s"))
	o.Status.Conditions = setCond(o.Status.Conditions,
		cond(v1alpha1.ConditionDegraded, metav1.ConditionFalse, "Offline", "phase Offline"))
}

// onPrem makes a service an on-prem one with its onboarding bundle.
func onPrem(o *v1alpha1.SyncService) {
	o.Spec.ServiceType = v1alpha1.ServiceTypeOnPrem
	o.Status.Workers = nil
	o.Status.OnboardingSecretName = "sync-onboarding"
	o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled,
		"onboarding bundle in Secret sync-onboarding for edge identity sync.acme"))
	o.Status.Conditions = setCond(o.Status.Conditions,
		cond(v1alpha1.ConditionProgressing, metav1.ConditionFalse, "NoWorkers", "on-prem workers run at the tenant's edge"))
}

// starting gives a service a second worker that has no ready replica yet.
func starting(o *v1alpha1.SyncService) {
	o.Status.Workers = append(o.Status.Workers, v1alpha1.WorkerStatus{Tenant: "beta", Deployment: "sync-beta"})
	o.Status.Conditions = setCond(o.Status.Conditions,
		cond(v1alpha1.ConditionProgressing, metav1.ConditionTrue, "WorkersStarting", "1 of 2 workers are not ready"))
}

func TestSyncServiceHealth(t *testing.T) {
	type ss = *v1alpha1.SyncService
	runCases(t, "SyncService", baseSyncService, []healthCase[ss]{
		{
			name:    "no status",
			raw:     noStatus,
			status:  "Progressing",
			message: "Waiting for the operator to report status",
		},
		{
			name:    "stale observedGeneration",
			mutate:  func(o ss) { o.Status.ObservedGeneration = 1 },
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 1)",
		},
		{
			name: "paused but not yet observed",
			mutate: func(o ss) {
				o.Spec.Paused = true
				o.Status.ObservedGeneration = gen - 1
			},
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 2)",
		},
		{
			name:    "Ready True and Online",
			status:  "Healthy",
			message: "Reconciled: 1 worker(s) for tenants [acme]; phase Online",
		},
		{
			name:    "Ready True without phase",
			mutate:  func(o ss) { o.Status.Phase = "" },
			status:  "Healthy",
			message: "Reconciled: 1 worker(s) for tenants [acme]",
		},
		{
			name: "Ready False",
			mutate: func(o ss) {
				o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTenantNotFound,
					`namespace "acme" has no integrations.serviceradar.io/tenant label naming an existing Tenant`))
			},
			status:  "Degraded",
			message: `TenantNotFound: namespace "acme" has no integrations.serviceradar.io/tenant label naming an existing Tenant`,
		},
		{
			name: "Ready Unknown",
			mutate: func(o ss) {
				o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionUnknown, "Reconciling", "issuing identities"))
			},
			status:  "Progressing",
			message: "Reconciling: issuing identities",
		},
		{
			name:    "no Ready condition",
			mutate:  func(o ss) { o.Status.Conditions = dropCond(o.Status.Conditions, v1alpha1.ConditionReady) },
			status:  "Progressing",
			message: "Waiting for the Ready condition",
		},
		{
			name: "paused",
			mutate: func(o ss) {
				o.Spec.Paused = true
				o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPaused,
					"paused: workers, identities and bundles are left as they are"))
			},
			status:  "Suspended",
			message: "Paused: paused: workers, identities and bundles are left as they are",
		},
		{
			name: "paused and Offline",
			mutate: func(o ss) {
				o.Spec.Paused = true
				offline(o)
			},
			status:  "Suspended",
			message: "Reconciled: 1 worker(s) for tenants [acme]",
		},
		{
			name: "paused while Ready False",
			mutate: func(o ss) {
				o.Spec.Paused = true
				o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec,
					"platform SyncServices belong in a namespace of the platform tenant"))
			},
			status:  "Suspended",
			message: "spec.paused is true; Ready is False: InvalidSpec: platform SyncServices belong in a namespace of the platform tenant",
		},
		{
			name: "paused without conditions",
			mutate: func(o ss) {
				o.Spec.Paused = true
				o.Status.Conditions = nil
			},
			status:  "Suspended",
			message: "spec.paused is true",
		},
		{
			name: "phase Degraded",
			mutate: func(o ss) {
				starting(o)
				o.Status.Phase = v1alpha1.PhaseDegraded
			},
			status:  "Degraded",
			message: "phase Degraded: heartbeats arrive but these workers have no ready replica: sync-beta",
		},
		{
			name: "phase Degraded, workers not listed",
			mutate: func(o ss) {
				starting(o)
				o.Status.Workers = nil
				o.Status.Phase = v1alpha1.PhaseDegraded
			},
			status:  "Degraded",
			message: "phase Degraded: WorkersStarting: 1 of 2 workers are not ready",
		},
		{
			name: "phase Degraded, nothing more known",
			mutate: func(o ss) {
				o.Status.Workers = nil
				o.Status.Conditions = dropCond(o.Status.Conditions, v1alpha1.ConditionProgressing)
				o.Status.Phase = v1alpha1.PhaseDegraded
			},
			status:  "Degraded",
			message: "phase Degraded: heartbeats arrive but some workers are not ready",
		},
		{
			name:    "phase Offline after heartbeats",
			mutate:  offline,
			status:  "Degraded",
			message: "phase Offline: NoHeartbeat: no heartbeat within 2m0s (last heartbeat 2026-05-01T12:30:00Z)",
		},
		{
			name: "phase Offline before the first heartbeat",
			mutate: func(o ss) {
				offline(o)
				o.Status.LastHeartbeatAt = nil
			},
			status:  "Progressing",
			message: "Waiting for the first heartbeat of the workers",
		},
		{
			name: "phase Offline while workers start",
			mutate: func(o ss) {
				offline(o)
				starting(o)
				o.Status.LastHeartbeatAt = nil
			},
			status:  "Progressing",
			message: "Waiting for the first heartbeat of the workers (WorkersStarting: 1 of 2 workers are not ready)",
		},
		{
			name: "idle SaaS service Offline",
			mutate: func(o ss) {
				offline(o)
				o.Status.Workers = []v1alpha1.WorkerStatus{}
				o.Status.Conditions = setCond(o.Status.Conditions, cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled,
					"0 worker(s) for tenants []"))
				o.Status.Conditions = setCond(o.Status.Conditions,
					cond(v1alpha1.ConditionProgressing, metav1.ConditionFalse, "NoWorkers", "no tenant has sources assigned"))
			},
			status:  "Healthy",
			message: "Reconciled: 0 worker(s) for tenants []; phase Offline: NoWorkers: no tenant has sources assigned",
		},
		{
			name:    "on-prem Online",
			mutate:  onPrem,
			status:  "Healthy",
			message: "Reconciled: onboarding bundle in Secret sync-onboarding for edge identity sync.acme; phase Online",
		},
		{
			name: "on-prem before its first heartbeat",
			mutate: func(o ss) {
				onPrem(o)
				offline(o)
				o.Status.LastHeartbeatAt = nil
			},
			status:  "Progressing",
			message: "Waiting for the first heartbeat of the on-prem worker (onboarding bundle in Secret sync-onboarding)",
		},
		{
			name: "on-prem without bundle name before its first heartbeat",
			mutate: func(o ss) {
				onPrem(o)
				offline(o)
				o.Status.LastHeartbeatAt = nil
				o.Status.OnboardingSecretName = ""
			},
			status:  "Progressing",
			message: "Waiting for the first heartbeat of the on-prem worker",
		},
		{
			name: "on-prem Offline after heartbeats",
			mutate: func(o ss) {
				onPrem(o)
				offline(o)
			},
			status:  "Degraded",
			message: "phase Offline: NoHeartbeat: no heartbeat within 2m0s (last heartbeat 2026-05-01T12:30:00Z)",
		},
	})
}

func baseIntegrationSource() *v1alpha1.IntegrationSource {
	return &v1alpha1.IntegrationSource{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "IntegrationSource"},
		ObjectMeta: metav1.ObjectMeta{Name: "netbox", Namespace: "acme", Generation: gen},
		Spec: v1alpha1.IntegrationSourceSpec{
			Type:           "netbox",
			SyncServiceRef: v1alpha1.SyncServiceReference{Name: "sync"},
		},
		Status: v1alpha1.IntegrationSourceStatus{
			ObservedGeneration: gen,
			AssignedWorker:     "sync-acme",
			LastSyncTime:       &t1,
			LastSyncResult:     v1alpha1.SyncResultSuccess,
			DevicesDiscovered:  42,
			LastRunID:          "5f0c1a8e-2b8d-4a51-9d7e-0c3b2f6e8a91",
			Conditions: []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "served by SyncService acme/sync (worker sync-acme)"),
			},
		},
	}
}

// failed records a failed run as the gateway does.
func failed(o *v1alpha1.IntegrationSource) {
	o.Status.LastSyncResult = v1alpha1.SyncResultFailed
	o.Status.LastError = "netbox: GET /api/dcim/devices/: 401 Unauthorized"
	o.Status.DevicesDiscovered = 0
}

func TestIntegrationSourceHealth(t *testing.T) {
	type is = *v1alpha1.IntegrationSource
	runCases(t, "IntegrationSource", baseIntegrationSource, []healthCase[is]{
		{
			name:    "no status",
			raw:     noStatus,
			status:  "Progressing",
			message: "Waiting for the operator to report status",
		},
		{
			name:    "stale observedGeneration",
			mutate:  func(o is) { o.Status.ObservedGeneration = gen - 1 },
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 2)",
		},
		{
			name: "only the gateway's fields",
			mutate: func(o is) {
				o.Status = v1alpha1.IntegrationSourceStatus{LastSyncTime: &t1, LastSyncResult: v1alpha1.SyncResultSuccess, DevicesDiscovered: 42}
			},
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 0)",
		},
		{
			name: "stale while the last sync failed",
			mutate: func(o is) {
				failed(o)
				o.Status.ObservedGeneration = gen - 1
			},
			status:  "Progressing",
			message: "Waiting for the operator to observe generation 3 (status is for generation 2)",
		},
		{
			name:    "Ready True, last sync succeeded",
			status:  "Healthy",
			message: "Reconciled: served by SyncService acme/sync (worker sync-acme); last sync Success",
		},
		{
			name: "Ready True, no sync run yet",
			mutate: func(o is) {
				o.Status.LastSyncResult, o.Status.LastSyncTime, o.Status.DevicesDiscovered, o.Status.LastRunID = "", nil, 0, ""
			},
			status:  "Healthy",
			message: "Reconciled: served by SyncService acme/sync (worker sync-acme); no sync run finished yet",
		},
		{
			name: "Ready True, last sync partial",
			mutate: func(o is) {
				o.Status.LastSyncResult = v1alpha1.SyncResultPartial
				o.Status.LastError = "page 7: context deadline exceeded"
			},
			status:  "Healthy",
			message: "Reconciled: served by SyncService acme/sync (worker sync-acme); last sync Partial: page 7: context deadline exceeded",
		},
		{
			name:    "Ready True, last sync partial without error",
			mutate:  func(o is) { o.Status.LastSyncResult = v1alpha1.SyncResultPartial },
			status:  "Healthy",
			message: "Reconciled: served by SyncService acme/sync (worker sync-acme); last sync Partial",
		},
		{
			name:    "last sync failed",
			mutate:  failed,
			status:  "Degraded",
			message: "Last sync failed at 2026-05-01T12:30:00Z: netbox: GET /api/dcim/devices/: 401 Unauthorized",
		},
		{
			name: "retraction held by the brake",
			mutate: func(o is) {
				o.Status.LastSyncResult = v1alpha1.SyncResultHeldRetraction
				o.Status.LastError = "retraction held: the run would retract 90 of the source's 100 available devices"
			},
			status:  "Degraded",
			message: "Last sync held its retraction: retraction held: the run would retract 90 of the source's 100 available devices",
		},
		{
			name: "last sync failed without time or error",
			mutate: func(o is) {
				failed(o)
				o.Status.LastError, o.Status.LastSyncTime = "", nil
			},
			status:  "Degraded",
			message: "Last sync failed: no error reported",
		},
		{
			name: "last sync failed while Ready Unknown",
			mutate: func(o is) {
				failed(o)
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionUnknown, "Reconciling", "")
			},
			status:  "Degraded",
			message: "Last sync failed at 2026-05-01T12:30:00Z: netbox: GET /api/dcim/devices/: 401 Unauthorized",
		},
		{
			name: "Ready False",
			mutate: func(o is) {
				o.Status.AssignedWorker = ""
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, `Secret "netbox-token" not found`)
			},
			status:  "Degraded",
			message: `SecretNotFound: Secret "netbox-token" not found`,
		},
		{
			name: "Ready False and last sync failed",
			mutate: func(o is) {
				failed(o)
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSyncServiceNotFound, "SyncService acme/sync not found")
			},
			status:  "Degraded",
			message: "SyncServiceNotFound: SyncService acme/sync not found",
		},
		{
			name: "Ready Unknown",
			mutate: func(o is) {
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionUnknown, "Reconciling", "resolving the SyncService")
			},
			status:  "Progressing",
			message: "Reconciling: resolving the SyncService",
		},
		{
			name:    "no Ready condition",
			mutate:  func(o is) { o.Status.Conditions = nil },
			status:  "Progressing",
			message: "Waiting for the Ready condition",
		},
		{
			name: "paused",
			mutate: func(o is) {
				o.Spec.Paused = true
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPaused,
					"source is paused; its worker keeps its devices and skips its runs")
			},
			status:  "Suspended",
			message: "Paused: source is paused; its worker keeps its devices and skips its runs",
		},
		{
			name: "paused after a failed sync",
			mutate: func(o is) {
				failed(o)
				o.Spec.Paused = true
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonPaused,
					"source is paused; its worker keeps its devices and skips its runs")
			},
			status:  "Suspended",
			message: "Paused: source is paused; its worker keeps its devices and skips its runs",
		},
		{
			name: "paused while Ready False",
			mutate: func(o is) {
				o.Spec.Paused = true
				o.Status.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSecretInvalid,
					`Secret "netbox-token" has no key "token", which netbox sources need`)
			},
			status:  "Suspended",
			message: `spec.paused is true; Ready is False: SecretInvalid: Secret "netbox-token" has no key "token", which netbox sources need`,
		},
		{
			name: "paused before the operator wrote status",
			mutate: func(o is) {
				o.Spec.Paused = true
			},
			raw:     noStatus,
			status:  "Progressing",
			message: "Waiting for the operator to report status",
		},
	})
}

// TestRunMirrorsArgoCD checks the sandbox the scripts are tested in: the
// libraries Argo CD leaves out are missing, and what Argo CD cannot read as a
// health status is an error.
func TestRunMirrorsArgoCD(t *testing.T) {
	tests := []struct {
		name, script, wantErr string
	}{
		{"string library", `return {status = string.upper("healthy")}`, "key 'upper'"},
		{"math library", `return {status = "Healthy", message = tostring(math.floor(1.5))}`, "key 'floor'"},
		{"io library", `io.write("x") return {status = "Healthy"}`, "key 'write'"},
		{"not a table", `return "Healthy"`, "not a table"},
		{"status not a string", `return {status = 1}`, "status"},
		{"message not a string", `return {status = "Healthy", message = {}}`, "message"},
		{"endless loop", `while true do end`, "context deadline exceeded"},
		{"Lua error", `error("boom")`, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(tt.script, map[string]any{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	got, err := Run(`return {status = obj.metadata.name .. table.concat({"", "x"}, "-") .. #obj.spec.items .. tostring(obj.spec.on)}`,
		map[string]any{"metadata": map[string]any{"name": "n"}, "spec": map[string]any{"items": []any{int64(1), "a", nil}, "on": true}})
	if err != nil {
		t.Fatal(err)
	}
	// nil list items become Lua nil, so the sequence ends before them.
	if got.Status != "n-x2true" {
		t.Fatalf("status = %q", got.Status)
	}
}
