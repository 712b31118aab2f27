package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/test/kubetest"
)

// The gateway watches the metadata of every Secret of the cluster; what
// `kubectl apply` leaves in annotations (the whole Secret, data included)
// must not reach its memory.
func TestSecretMetadataCacheHoldsNoSecretData(t *testing.T) {
	env, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const marker = "c2VjcmV0LW1hcmtlci12YWx1ZQ"
	applied := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"applied","namespace":"default"},"data":{"password":"` + marker + `"}}`
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "applied", Namespace: "default",
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": applied, "note": marker},
			Labels:      map[string]string{"marker": marker}},
		Data: map[string][]byte{"password": []byte(marker)},
	}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}

	scheme, err := newScheme()
	if err != nil {
		t.Fatal(err)
	}
	informers, err := newInformers(env.Config, scheme)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	// The first read starts the metadata informer and waits for its sync.
	if err := informers.Get(ctx, client.ObjectKeyFromObject(sec), meta); err != nil {
		t.Fatal(err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := informers.List(ctx, list, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	if meta.Name != "applied" || meta.UID != sec.UID || meta.ResourceVersion == "" || len(list.Items) == 0 {
		t.Fatalf("cached metadata lacks what the catalog needs: %+v (%d listed)", meta, len(list.Items))
	}
	raw, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if cached := fmt.Sprintf("%v %s", meta, raw); strings.Contains(cached, marker) {
		t.Fatalf("the Secret's data reached the cache: %s", cached)
	}
	if meta.Annotations != nil || meta.Labels != nil || meta.ManagedFields != nil || meta.OwnerReferences != nil {
		t.Fatalf("cached metadata keeps more than the catalog needs: %+v", meta.ObjectMeta)
	}
}
