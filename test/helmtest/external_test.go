package helmtest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestGatewayExposure renders each way of reaching the gateway from edge
// sites: the address goes to the manager (bundles, certificate), and only
// the gRPC port leaves the cluster, with TLS passed through to the gateway.
func TestGatewayExposure(t *testing.T) {
	const addr = "gateway.acme.example:443"
	grpcOnly := func(t *testing.T, svc *unstructured.Unstructured, port string) {
		t.Helper()
		ports := asMaps(field(svc.Object, "spec", "ports"))
		if len(ports) != 1 || fmt.Sprint(ports[0]["port"]) != port || ports[0]["targetPort"] != "grpc" {
			t.Errorf("external Service ports %v, want only %s -> grpc", ports, port)
		}
	}
	for _, tc := range []struct {
		name  string
		set   []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{
		{"nothing exposed by default", nil, func(t *testing.T, objs []*unstructured.Unstructured) {
			if find(objs, "Service", gateway+"-external") != nil || count(objs, "Ingress") != 0 || count(objs, "TLSRoute") != 0 {
				t.Errorf("the gateway is exposed without being asked: %v", keys(objs))
			}
			if hasPrefix(args(t, objs, manager), "--edge-gateway-address") {
				t.Error("an edge address is set by default")
			}
		}},
		{"address only", []string{"--set", "gateway.external.address=" + addr}, func(t *testing.T, objs []*unstructured.Unstructured) {
			containsAll(t, "manager args", args(t, objs, manager), "--edge-gateway-address="+addr)
		}},
		{"LoadBalancer", []string{"--set", "gateway.external.address=" + addr, "--set", "gateway.external.service.enabled=true",
			"--set", "gateway.external.service.loadBalancerSourceRanges={198.51.100.0/24}", "--set", "gateway.external.service.externalTrafficPolicy=Local"},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				svc := mustFind(t, objs, "Service", gateway+"-external")
				grpcOnly(t, svc, "443")
				if field(svc.Object, "spec", "type") != "LoadBalancer" || field(svc.Object, "spec", "externalTrafficPolicy") != "Local" ||
					!reflect.DeepEqual(field(svc.Object, "spec", "loadBalancerSourceRanges"), []any{"198.51.100.0/24"}) {
					t.Errorf("external Service spec %v", svc.Object["spec"])
				}
				if internal := mustFind(t, objs, "Service", gateway); field(internal.Object, "spec", "type") != "ClusterIP" {
					t.Errorf("the in-cluster Service became %v", field(internal.Object, "spec", "type"))
				}
			}},
		{"NodePort", []string{"--set", "gateway.external.service.enabled=true", "--set", "gateway.external.service.type=NodePort",
			"--set", "gateway.external.service.nodePort=30443"},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				svc := mustFind(t, objs, "Service", gateway+"-external")
				grpcOnly(t, svc, "443")
				if p := asMaps(field(svc.Object, "spec", "ports"))[0]; fmt.Sprint(p["nodePort"]) != "30443" || field(svc.Object, "spec", "type") != "NodePort" {
					t.Errorf("NodePort Service %v", svc.Object["spec"])
				}
			}},
		{"ingress-nginx with TLS passthrough", []string{"--set", "gateway.external.address=" + addr, "--set", "gateway.external.ingress.enabled=true"},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				ing := mustFind(t, objs, "Ingress", gateway)
				a := ing.GetAnnotations()
				if a["nginx.ingress.kubernetes.io/ssl-passthrough"] != "true" || a["nginx.ingress.kubernetes.io/backend-protocol"] != "GRPCS" {
					t.Errorf("Ingress annotations %v, want TLS passthrough to a TLS backend", a)
				}
				rules := asMaps(field(ing.Object, "spec", "rules"))
				if len(rules) != 1 || rules[0]["host"] != "gateway.acme.example" || field(ing.Object, "spec", "ingressClassName") != "nginx" {
					t.Errorf("Ingress spec %v", ing.Object["spec"])
				}
				backend := asMaps(field(rules[0], "http", "paths"))[0]
				if field(backend, "backend", "service", "name") != gateway || field(backend, "backend", "service", "port", "name") != "grpc" {
					t.Errorf("Ingress backend %v", backend)
				}
			}},
		{"Gateway API TLSRoute", []string{"--set", "gateway.external.address=" + addr, "--set", "gateway.external.tlsRoute.enabled=true",
			"--set", "gateway.external.tlsRoute.parentRefs[0].name=edge", "--set", "gateway.external.tlsRoute.parentRefs[0].sectionName=tls-passthrough"},
			func(t *testing.T, objs []*unstructured.Unstructured) {
				r := mustFind(t, objs, "TLSRoute", gateway)
				if r.GetAPIVersion() != "gateway.networking.k8s.io/v1alpha2" ||
					!reflect.DeepEqual(field(r.Object, "spec", "hostnames"), []any{"gateway.acme.example"}) ||
					fmt.Sprint(field(r.Object, "spec", "parentRefs")) != "[map[name:edge sectionName:tls-passthrough]]" {
					t.Errorf("TLSRoute %v %v", r.GetAPIVersion(), r.Object["spec"])
				}
				backends := asMaps(field(asMaps(field(r.Object, "spec", "rules"))[0], "backendRefs"))
				if len(backends) != 1 || backends[0]["name"] != gateway || fmt.Sprint(backends[0]["port"]) != "50052" {
					t.Errorf("TLSRoute backends %v", backends)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, render(t, tc.set...)) })
	}

	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"an ingress without an address", []string{"--set", "gateway.external.ingress.enabled=true"}, "set gateway.external.address"},
		{"a route to an IP address", []string{"--set", "gateway.external.tlsRoute.enabled=true", "--set", "gateway.external.address=192.0.2.7:443",
			"--set", "gateway.external.tlsRoute.parentRefs[0].name=edge"}, "is an IP address"},
		{"a route without a parent", []string{"--set", "gateway.external.tlsRoute.enabled=true", "--set", "gateway.external.address=" + addr}, "parentRefs must name the Gateway"},
		{"an address without a port", []string{"--set", "gateway.external.address=gateway.acme.example"}, "address"},
		{"an external ClusterIP Service", []string{"--set", "gateway.external.service.type=ClusterIP"}, "type"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			_, errOut, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil || !strings.Contains(errOut, tc.want) {
				t.Errorf("helm template %v: %v, want an error saying %q:\n%s", tc.set, err, tc.want, errOut)
			}
		})
	}
}
