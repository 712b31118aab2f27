package controllers_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/controllers"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/ca"
	"github.com/serviceradar/sync-operator/platform"
	"github.com/serviceradar/sync-operator/test/kubetest"
)

// identityWorld is a control plane of its own (the test deletes the
// platform Secrets) with a manager that can be restarted.
type identityWorld struct {
	t    *testing.T
	e    *kubetest.Env
	c    client.Client
	cfg  *rest.Config // the manager's user, bound to its shipped RBAC
	opts controllers.Options
	stop func()
}

func (w *identityWorld) start() { w.stop = startManagerOn(w.t, w.e, w.cfg, w.opts).stop }

func (w *identityWorld) restart(between func()) {
	w.stop()
	between()
	w.start()
}

// ids reads every Tenant's recorded tenant ID and CA fingerprint.
func (w *identityWorld) ids() map[string][2]string {
	var list v1alpha1.TenantList
	if err := w.c.List(context.Background(), &list); err != nil {
		w.t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, t := range list.Items {
		out[t.Name] = [2]string{t.Status.TenantID, t.Status.CAFingerprint}
	}
	return out
}

func (w *identityWorld) deleteSecret(name string) {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: name}}
	if err := w.c.Delete(context.Background(), sec); err != nil {
		w.t.Fatalf("deleting Secret %s: %v", name, err)
	}
}

func (w *identityWorld) secretValue(name, key string) (string, error) {
	sec := &corev1.Secret{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: name}, sec); err != nil {
		return "", err
	}
	return string(sec.Data[key]), nil
}

// event waits for an event of reason about the platform Tenant and returns its note.
func (w *identityWorld) event(t *testing.T, reason string, since time.Time) string {
	t.Helper()
	var note string
	waitFor(t, "event "+reason+" on the platform Tenant", func() error {
		var list eventsv1.EventList
		if err := w.c.List(context.Background(), &list); err != nil {
			return err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "Tenant" && ev.Regarding.Name == "platform" && ev.Reason == reason && !ev.EventTime.Time.Before(since.Truncate(time.Second)) {
				note = ev.Note
				return nil
			}
		}
		return fmt.Errorf("no %s event yet", reason)
	})
	return note
}

// platformRefuses waits for the Tenants' Ready condition to report the
// refusal, naming want in its message.
func (w *identityWorld) platformRefuses(t *testing.T, want string) {
	t.Helper()
	for _, name := range []string{"platform", "acme"} {
		waitFor(t, "Tenant "+name+" Ready=False naming the lost identity", func() error {
			tn := &v1alpha1.Tenant{}
			if err := w.c.Get(context.Background(), client.ObjectKey{Name: name}, tn); err != nil {
				return err
			}
			c := meta.FindStatusCondition(tn.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonPlatformIdentity || !strings.Contains(c.Message, want) {
				return fmt.Errorf("Ready condition %+v", c)
			}
			return nil
		})
	}
}

func (w *identityWorld) rekey() {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, platform.RekeyAnnotation)
	if err := w.c.Patch(context.Background(), &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "platform"}},
		client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		w.t.Fatal(err)
	}
}

// TestPlatformIdentitySurvivesLoss deletes each platform Secret while
// tenants exist, with the manager running and across restarts: the platform
// UUID is recovered from the platform Tenant's status where it can be, and
// otherwise the manager refuses, with an event and the Tenants' Ready
// condition, until the re-key annotation says to start over. A tenant's ID
// never changes silently.
func TestPlatformIdentitySurvivesLoss(t *testing.T) {
	ctx := context.Background()
	e, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		t.Fatal(err)
	}
	o := opts
	o.PlatformSync, o.IdentityCheckInterval = false, 200*time.Millisecond
	o.GatewayTLSSecret = "sync-gateway-tls"
	user, err := e.UserWithRoles(ctx, managerUser, "config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := &identityWorld{t: t, e: e, c: e.Client, cfg: user.Config(), opts: o}
	w.start()
	for _, slug := range []string{"acme", "globex"} {
		if err := e.Client.Create(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: v1alpha1.TenantSpec{Slug: slug}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three Tenants with IDs and CAs", func() error {
		for name, v := range w.ids() {
			if v[0] == "" || v[1] == "" {
				return fmt.Errorf("tenant %s has ID %q CA %q", name, v[0], v[1])
			}
		}
		if n := len(w.ids()); n != 3 {
			return fmt.Errorf("%d tenants", n)
		}
		return nil
	})
	original := w.ids()
	platformID := original["platform"][0]
	if got := platform.TenantID(uuid.MustParse(platformID), "acme").String(); got != original["acme"][0] {
		t.Fatalf("acme's ID %s does not derive from the platform's %s", original["acme"][0], platformID)
	}
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		if got := w.ids(); fmt.Sprint(got) != fmt.Sprint(original) {
			t.Fatalf("%s: tenant IDs and CAs changed from %v to %v", what, original, got)
		}
	}
	recovered := func(t *testing.T, what string) {
		t.Helper()
		waitFor(t, what+": the identity Secret recovered", func() error {
			v, err := w.secretValue(platform.IdentitySecret, platform.TenantIDKey)
			if err != nil || v != platformID {
				return fmt.Errorf("Secret holds %q (%v), want %s", v, err, platformID)
			}
			return nil
		})
		for _, name := range []string{"platform", "acme", "globex"} {
			waitFor(t, what+": Tenant "+name+" Ready", func() error {
				tn := &v1alpha1.Tenant{}
				if err := w.c.Get(ctx, client.ObjectKey{Name: name}, tn); err != nil {
					return err
				}
				if c := meta.FindStatusCondition(tn.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
					return fmt.Errorf("Ready condition %+v", c)
				}
				return nil
			})
		}
		unchanged(t, what)
	}

	t.Run("identity Secret deleted while the manager runs", func(t *testing.T) {
		since := time.Now()
		w.deleteSecret(platform.IdentitySecret)
		recovered(t, "deleted while running")
		w.event(t, "PlatformIdentityRecovered", since)
	})

	t.Run("identity Secret deleted across a restart", func(t *testing.T) {
		w.restart(func() { w.deleteSecret(platform.IdentitySecret) })
		recovered(t, "deleted across a restart")
	})

	t.Run("identity Secret of another platform restored", func(t *testing.T) {
		since := time.Now()
		w.restart(func() {
			w.deleteSecret(platform.IdentitySecret)
			other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: platform.IdentitySecret},
				Data: map[string][]byte{platform.TenantIDKey: []byte(uuid.NewString())}}
			if err := w.c.Create(ctx, other); err != nil {
				t.Fatal(err)
			}
		})
		w.platformRefuses(t, "would change recorded tenant IDs")
		if note := w.event(t, "PlatformIdentityLost", since); !strings.Contains(note, platform.RekeyAnnotation) {
			t.Errorf("the refusal event does not name the re-key annotation: %s", note)
		}
		unchanged(t, "a foreign identity Secret")
		// Putting the right one back heals it.
		w.restart(func() {
			w.deleteSecret(platform.IdentitySecret)
			right := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: platform.IdentitySecret},
				Data: map[string][]byte{platform.TenantIDKey: []byte(platformID)}}
			if err := w.c.Create(ctx, right); err != nil {
				t.Fatal(err)
			}
		})
		recovered(t, "the right Secret restored")
	})

	t.Run("root CA Secret deleted: refused, then re-keyed", func(t *testing.T) {
		since := time.Now()
		w.deleteSecret(platform.RootCASecret)
		w.platformRefuses(t, "tenant CAs issued by it exist")
		w.event(t, "PlatformIdentityLost", since)
		if _, err := w.secretValue(platform.RootCASecret, corev1.TLSCertKey); err == nil {
			t.Fatal("a new root CA was minted although tenant CAs of the old one exist")
		}
		unchanged(t, "a lost root CA")

		w.rekey()
		var rootPEM string
		waitFor(t, "a new root CA", func() error {
			rootPEM, err = w.secretValue(platform.RootCASecret, corev1.TLSCertKey)
			return err
		})
		w.event(t, "PlatformRekeyed", since)
		waitFor(t, "tenant CAs reissued under the new root", func() error {
			for _, slug := range []string{"acme", "globex"} {
				if got := w.ids()[slug]; got[1] == original[slug][1] || got[0] != original[slug][0] {
					return fmt.Errorf("tenant %s: ID %s CA %s (before: %v)", slug, got[0], got[1], original[slug])
				}
				if err := chainsTo(w, platform.TenantCASecretName(slug), rootPEM); err != nil {
					return err
				}
			}
			return nil
		})
		waitFor(t, "the gateway certificate reissued under the new root", func() error {
			if ca, err := w.secretValue("sync-gateway-tls", "ca.crt"); err != nil || ca != rootPEM {
				return fmt.Errorf("the gateway Secret's ca.crt is not the new root (%v)", err)
			}
			return chainsTo(w, "sync-gateway-tls", rootPEM)
		})
		waitFor(t, "the re-key annotation consumed", func() error {
			tn := &v1alpha1.Tenant{}
			if err := w.c.Get(ctx, client.ObjectKey{Name: "platform"}, tn); err != nil {
				return err
			}
			if _, ok := tn.Annotations[platform.RekeyAnnotation]; ok {
				return fmt.Errorf("annotation still there")
			}
			return nil
		})
		original = w.ids()
	})

	t.Run("identity Secret and the platform Tenant's status lost: refused, then re-keyed", func(t *testing.T) {
		since := time.Now()
		w.restart(func() {
			w.deleteSecret(platform.IdentitySecret)
			// A restore that does not bring status back.
			if err := w.c.Status().Patch(ctx, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "platform"}},
				client.RawPatch(types.MergePatchType, []byte(`{"status":{"tenantID":null}}`))); err != nil {
				t.Fatal(err)
			}
		})
		w.platformRefuses(t, "records no tenant ID to recover it from")
		w.event(t, "PlatformIdentityLost", since)
		if _, err := w.secretValue(platform.IdentitySecret, platform.TenantIDKey); err == nil {
			t.Fatal("a new platform UUID was minted although tenants have recorded IDs")
		}
		if got := w.ids()["acme"][0]; got != original["acme"][0] {
			t.Fatalf("acme's ID changed to %q during the refusal", got)
		}

		w.rekey()
		waitFor(t, "every tenant ID derived from the new platform UUID", func() error {
			v, err := w.secretValue(platform.IdentitySecret, platform.TenantIDKey)
			if err != nil {
				return err
			}
			if v == platformID {
				return fmt.Errorf("the old UUID came back")
			}
			ids := w.ids()
			if ids["platform"][0] != v {
				return fmt.Errorf("platform Tenant records %s, Secret %s", ids["platform"][0], v)
			}
			for _, slug := range []string{"acme", "globex"} {
				if want := platform.TenantID(uuid.MustParse(v), slug).String(); ids[slug][0] != want {
					return fmt.Errorf("tenant %s records %s, want %s", slug, ids[slug][0], want)
				}
			}
			return nil
		})
		w.event(t, "PlatformRekeyed", since)
	})
}

// chainsTo checks that the CA in Secret name is signed by the root in rootPEM.
func chainsTo(w *identityWorld, name, rootPEM string) error {
	caPEM, err := w.secretValue(name, corev1.TLSCertKey)
	if err != nil {
		return err
	}
	parse := func(s string) (*x509.Certificate, error) {
		b, _ := pem.Decode([]byte(s))
		if b == nil {
			return nil, fmt.Errorf("no PEM")
		}
		return x509.ParseCertificate(b.Bytes)
	}
	root, err := parse(rootPEM)
	if err != nil {
		return err
	}
	c, err := parse(caPEM)
	if err != nil {
		return err
	}
	if err := c.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("the certificate in Secret %s is not signed by the new root: %w", name, err)
	}
	return nil
}

// TestBackupRestoresIdentity backs up what README.md says to back up (the
// Secrets labelled for backup and the custom resources, without status) from
// one control plane, restores it into a fresh one, and checks that the
// restored tenants keep their IDs and their CAs, so that an edge
// certificate issued before the backup still chains to the CA the restored
// Tenant records.
func TestBackupRestoresIdentity(t *testing.T) {
	ctx := context.Background()
	world := func() (*kubetest.Env, *rest.Config) {
		e, err := kubetest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Stop() })
		if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
			t.Fatal(err)
		}
		user, err := e.UserWithRoles(ctx, managerUser, "config/rbac/role.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return e, user.Config()
	}
	o := opts
	o.PlatformSync = false

	// The original cluster: a tenant with an edge SyncService.
	a, aCfg := world()
	stopA := startManagerOn(t, a, aCfg, o).stop
	site := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-site", Labels: map[string]string{v1alpha1.TenantLabel: "acme"}}}
	edge := &v1alpha1.SyncService{ObjectMeta: metav1.ObjectMeta{Namespace: site.Name, Name: "edge-1"},
		Spec: v1alpha1.SyncServiceSpec{ServiceType: v1alpha1.ServiceTypeOnPrem, Partition: "hq"}}
	for _, obj := range []client.Object{site, &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: v1alpha1.TenantSpec{Slug: "acme"}}, edge} {
		if err := a.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	bundle := &corev1.Secret{}
	waitFor(t, "the edge onboarding bundle", func() error {
		return a.Client.Get(ctx, client.ObjectKey{Namespace: site.Name, Name: "edge-1-onboarding"}, bundle)
	})
	wa := &identityWorld{t: t, e: a, c: a.Client}
	waitFor(t, "tenants with IDs and CAs", func() error {
		for name, v := range wa.ids() {
			if v[0] == "" || v[1] == "" {
				return fmt.Errorf("tenant %s: %v", name, v)
			}
		}
		return nil
	})
	before := wa.ids()
	stopA()

	// The backup: labelled Secrets, CRs and tenant namespaces, as a user
	// would export them (no status, no server-set metadata).
	var secrets corev1.SecretList
	if err := a.Client.List(ctx, &secrets, client.InNamespace(operatorNS), client.MatchingLabels{platform.BackupLabel: "true"}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range secrets.Items {
		names = append(names, s.Name)
	}
	for _, want := range []string{platform.IdentitySecret, platform.RootCASecret, platform.TenantCASecretName("acme"), platform.TenantCASecretName("platform")} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("the backup label selects %v, missing %s", names, want)
		}
	}
	var tenants v1alpha1.TenantList
	var services v1alpha1.SyncServiceList
	if err := a.Client.List(ctx, &tenants); err != nil {
		t.Fatal(err)
	}
	if err := a.Client.List(ctx, &services); err != nil {
		t.Fatal(err)
	}
	clean := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels, Annotations: m.Annotations}
	}

	// The restore, into a fresh control plane.
	b, bCfg := world()
	restore := []client.Object{&corev1.Namespace{ObjectMeta: clean(site.ObjectMeta)}}
	for _, s := range secrets.Items {
		restore = append(restore, &corev1.Secret{ObjectMeta: clean(s.ObjectMeta), Type: s.Type, Data: s.Data})
	}
	for _, tn := range tenants.Items {
		restore = append(restore, &v1alpha1.Tenant{ObjectMeta: clean(tn.ObjectMeta), Spec: tn.Spec})
	}
	for _, ss := range services.Items {
		restore = append(restore, &v1alpha1.SyncService{ObjectMeta: clean(ss.ObjectMeta), Spec: ss.Spec})
	}
	for _, obj := range restore {
		if err := b.Client.Create(ctx, obj); err != nil {
			t.Fatalf("restoring %T %s: %v", obj, obj.GetName(), err)
		}
	}
	startManagerOn(t, b, bCfg, o)
	wb := &identityWorld{t: t, e: b, c: b.Client}
	waitFor(t, "the restored tenants' IDs and CAs", func() error {
		if got := wb.ids(); fmt.Sprint(got) != fmt.Sprint(before) {
			return fmt.Errorf("restored %v, want %v", got, before)
		}
		return nil
	})
	// The edge certificate issued before the backup chains to the restored
	// tenant CA, whose fingerprint the restored Tenant records.
	certs, err := ca.ParseCertificatesPEM(bundle.Data[corev1.TLSCertKey])
	if err != nil || len(certs) < 1 {
		t.Fatalf("the edge certificate: %v", err)
	}
	caPEM, err := wb.secretValue(platform.TenantCASecretName("acme"), corev1.TLSCertKey)
	if err != nil {
		t.Fatal(err)
	}
	tenantCA, err := ca.ParseCertificatesPEM([]byte(caPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := certs[0].CheckSignatureFrom(tenantCA[0]); err != nil {
		t.Fatalf("the edge certificate issued before the backup does not chain to the restored tenant CA: %v", err)
	}
	if fp := identity.KeyFingerprint(tenantCA[0]); fp != before["acme"][1] {
		t.Fatalf("the restored tenant CA has fingerprint %s, the Tenant recorded %s", fp, before["acme"][1])
	}
}
