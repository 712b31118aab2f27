package server

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	ctrlcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/serviceradar/sync-operator/api/v1alpha1"
	"github.com/serviceradar/sync-operator/gateway/catalog"
	"github.com/serviceradar/sync-operator/identity"
	"github.com/serviceradar/sync-operator/identity/mtls"
	"github.com/serviceradar/sync-operator/identity/renewal"
	pb "github.com/serviceradar/sync-operator/proto"
	"github.com/serviceradar/sync-operator/statusapply"
)

// RenewalFieldOwner is the server-side apply field manager of
// status.certificateRequest. It is not FieldOwner: a heartbeat applies only
// its own fields under FieldOwner, which would drop the request.
const RenewalFieldOwner = "sync-operator-gateway-renewal"

// renewalWaiters wakes the ControlStreams waiting for the manager's answer
// to a certificate request, by SyncService.
type renewalWaiters struct {
	mu   sync.Mutex
	wake map[types.UID]chan struct{}
}

// changed returns a channel closed at the next change of the SyncService's
// status.certificateRenewal. Take it before reading the answer.
func (w *renewalWaiters) changed(uid types.UID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake == nil {
		w.wake = map[types.UID]chan struct{}{}
	}
	ch := w.wake[uid]
	if ch == nil {
		ch = make(chan struct{})
		w.wake[uid] = ch
	}
	return ch
}

func (w *renewalWaiters) notify(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch := w.wake[uid]; ch != nil {
		close(ch)
		delete(w.wake, uid)
	}
}

// watchRenewals wakes the streams waiting for an answer when a
// SyncService's status.certificateRenewal changes in the informer cache.
func (s *Server) watchRenewals(ctx context.Context, c ctrlcache.Cache) error {
	inf, err := c.GetInformer(ctx, &v1alpha1.SyncService{})
	if err != nil {
		return fmt.Errorf("watching SyncServices for certificate renewals: %w", err)
	}
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*v1alpha1.SyncService)
			n, ok2 := obj.(*v1alpha1.SyncService)
			if ok1 && ok2 && !sameRenewal(o.Status.CertificateRenewal, n.Status.CertificateRenewal) {
				s.renewals.notify(n.UID)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ss, ok := obj.(*v1alpha1.SyncService); ok {
				s.renewals.notify(ss.UID)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching SyncServices for certificate renewals: %w", err)
	}
	return nil
}

func sameRenewal(a, b *v1alpha1.EdgeCertificateRenewal) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.RequestID == b.RequestID && sameMicro(a.RequestedAt, b.RequestedAt) && a.AnsweredAt.Equal(&b.AnsweredAt)
}

// pendingRenewal is a certificate request a ControlStream recorded and
// waits for the answer to.
type pendingRenewal struct {
	key         types.NamespacedName
	uid         types.UID
	id          string
	requestedAt metav1.MicroTime
}

// renewalRefused is an answer the gateway gives itself, without the manager.
func renewalRefused(id, reason, format string, args ...any) *pb.ControlStreamResponse {
	return &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_CertificateRenewal{CertificateRenewal: &pb.CertificateRenewal{
		RequestId: id, Reason: reason, Message: Clip(fmt.Sprintf(format, args...)),
	}}}
}

// peerLeaf is the certificate the caller presented on this connection.
func peerLeaf(ctx context.Context) (*x509.Certificate, error) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil, mtls.ErrNoPeer
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, mtls.ErrNoPeer
	}
	return info.State.PeerCertificates[0], nil
}

// recordRenewal checks the caller of a ControlStream that sent a
// certificate request, at the time it sent it, and records the request on
// its SyncService's status for the manager, which alone signs. The caller
// must be an edge certificate (not an SVID, not an upstream-format one) of
// an enrolled OnPrem SyncService that is not paused, valid now and not
// revoked; the request must be within bounds, signed by its key and proved
// with the key of the presented certificate. The request's content (which
// identity, which extensions) is the manager's to judge. It returns the
// request waited for, or an answer that refuses it at once.
func (s *Server) recordRenewal(ctx context.Context, req *pb.CertificateSigningRequest) (*pendingRenewal, *pb.ControlStreamResponse) {
	id, err := s.peer(ctx)
	if err != nil {
		if errors.Is(err, mtls.ErrCertificateExpired) {
			return nil, renewalRefused("", renewal.ReasonPresentedExpired, "the presented certificate has expired: renew with the onboarding bundle")
		}
		return nil, renewalRefused("", renewal.ReasonPresentedUntrusted, "no verified client certificate")
	}
	if id.IsSPIFFE() || id.Upstream || id.Class != identity.ClassEdge {
		s.o.Log.Info("refused a certificate request", "caller", id.String(), "reason", "not an edge certificate")
		return nil, renewalRefused("", renewal.ReasonNotServed, "only edge certificates of OnPrem SyncServices renew over the control stream")
	}
	e, err := s.catalog.Sync(ctx, id)
	switch {
	case errors.Is(err, catalog.ErrRevoked):
		s.o.Log.Info("refused a certificate request", "caller", id.String(), "reason", "revoked")
		return nil, renewalRefused("", renewal.ReasonPresentedRevoked, "the presented certificate was revoked: its SyncService's edge identity was issued again")
	case err != nil:
		s.o.Log.Info("refused a certificate request", "caller", id.String(), "reason", Clip(err.Error()))
		return nil, renewalRefused("", renewal.ReasonNotServed, "the caller is not an enrolled edge worker")
	}
	ss := e.SyncService
	if ss.Spec.ServiceType != v1alpha1.ServiceTypeOnPrem || ss.Spec.Paused {
		s.o.Log.Info("refused a certificate request", "caller", id.String(), "reason", "SyncService paused or not OnPrem")
		return nil, renewalRefused("", renewal.ReasonNotServed, "the SyncService is paused or not OnPrem: no certificate is issued")
	}
	csr, reqID, err := renewal.ParseRequest(req.GetCsrPem())
	if err != nil {
		var r *renewal.Refusal
		errors.As(err, &r)
		return nil, renewalRefused("", r.Reason, "%s", r.Message)
	}
	leaf, err := peerLeaf(ctx)
	if err != nil {
		return nil, renewalRefused(reqID, renewal.ReasonPresentedUntrusted, "no verified client certificate")
	}
	if err := renewal.VerifyProof(leaf, csr.Raw, req.GetProof()); err != nil {
		s.o.Log.Info("refused a certificate request", "caller", id.String(), "reason", "invalid proof")
		return nil, renewalRefused(reqID, renewal.ReasonInvalidProof, "the proof is not the request signed with the presented certificate's key")
	}
	key := client.ObjectKeyFromObject(ss)
	// The same request still waiting for its answer is not recorded again.
	cur := &v1alpha1.SyncService{}
	if err := s.o.Reader.Get(ctx, key, cur); err == nil && cur.UID == ss.UID {
		if pr := cur.Status.CertificateRequest; pr != nil && pr.ID == reqID && !answers(cur.Status.CertificateRenewal, pr) {
			return &pendingRenewal{key: key, uid: ss.UID, id: reqID, requestedAt: pr.RequestedAt}, nil
		}
	}
	at := metav1.NewMicroTime(s.o.Clock.Now())
	rec := &v1alpha1.EdgeCertificateRequest{
		ID: reqID, CSR: string(req.GetCsrPem()), Proof: base64.StdEncoding.EncodeToString(req.GetProof()),
		PresentedCertificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
		RequestedAt:          at,
	}
	if err := statusapply.Apply(ctx, s.o.Status, RenewalFieldOwner, &v1alpha1.SyncService{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Status:     v1alpha1.SyncServiceStatus{CertificateRequest: rec},
	}); err != nil {
		s.o.Log.Error(err, "recording a certificate request", "caller", id.String())
		return nil, renewalRefused(reqID, "Unavailable", "recording the request failed; send it again")
	}
	s.o.Log.Info("recorded a certificate request", "caller", id.String(), "request", reqID)
	return &pendingRenewal{key: key, uid: ss.UID, id: reqID, requestedAt: at}, nil
}

// sameMicro compares times at the microsecond resolution the API server stores.
func sameMicro(a, b metav1.MicroTime) bool {
	return a.UnixMicro() == b.UnixMicro()
}

// answers reports whether ans is the answer to req.
func answers(ans *v1alpha1.EdgeCertificateRenewal, req *v1alpha1.EdgeCertificateRequest) bool {
	return ans != nil && ans.RequestID == req.ID && sameMicro(ans.RequestedAt, req.RequestedAt)
}

// renewalAnswer is the manager's answer to p as the cache has it, or nil
// while there is none. A SyncService gone answers with a refusal.
func (s *Server) renewalAnswer(ctx context.Context, p *pendingRenewal) *pb.ControlStreamResponse {
	ss := &v1alpha1.SyncService{}
	if err := s.o.Reader.Get(ctx, p.key, ss); err != nil || ss.UID != p.uid {
		return renewalRefused(p.id, renewal.ReasonNotServed, "the SyncService is gone")
	}
	ans := ss.Status.CertificateRenewal
	if ans == nil || ans.RequestID != p.id || !sameMicro(ans.RequestedAt, p.requestedAt) {
		return nil
	}
	return &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_CertificateRenewal{CertificateRenewal: &pb.CertificateRenewal{
		RequestId: ans.RequestID, Issued: ans.Issued, CertificatePem: []byte(ans.Certificate), Reason: ans.Reason, Message: ans.Message,
	}}}
}
