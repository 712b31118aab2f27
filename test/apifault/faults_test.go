package apifault

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testAPI answers rejects with "reject <status>" and errors with
// "error: <msg>", so tests see which writer answered.
var testAPI = API{
	Name: "testemu",
	Reject: func(w http.ResponseWriter, status int) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte("reject " + http.StatusText(status)))
	},
	Error: func(w http.ResponseWriter, status int, msg string) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte("error: " + msg))
	},
}

// admitted sends one request through Admit; an admitted request is answered
// 200 "ok", as the emulator behind it would.
func admitted(in *Injector[int]) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	if in.Admit(rec, httptest.NewRequest(http.MethodGet, "/", nil)) {
		rec.WriteHeader(http.StatusOK)
		_, _ = rec.WriteString("ok")
	}
	return rec
}

func TestPageFaultString(t *testing.T) {
	cases := []struct {
		fault PageFault
		want  string
	}{
		{PageServerError, "server-error"},
		{PageMalformed, "malformed"},
		{PageFault(7), "PageFault(7)"},
	}
	for _, tc := range cases {
		if got := tc.fault.String(); got != tc.want {
			t.Errorf("PageFault(%d).String() = %q, want %q", int(tc.fault), got, tc.want)
		}
	}
}

func TestAdmit(t *testing.T) {
	cases := []struct {
		name           string
		inject         func(in *Injector[int])
		want           []int
		wantRetryAfter string // of the first answer
		wantCounts     Counts
	}{
		{
			name:       "no faults",
			inject:     func(*Injector[int]) {},
			want:       []int{200, 200},
			wantCounts: Counts{Requests: 2},
		},
		{
			name:           "rate limit rounds Retry-After up",
			inject:         func(in *Injector[int]) { in.RateLimitNext(2, 1500*time.Millisecond) },
			want:           []int{429, 429, 200},
			wantRetryAfter: "2",
			wantCounts:     Counts{Requests: 3, RateLimited: 2},
		},
		{
			name:           "rate limit without a wait",
			inject:         func(in *Injector[int]) { in.RateLimitNext(1, 0) },
			want:           []int{429, 200},
			wantRetryAfter: "0",
			wantCounts:     Counts{Requests: 2, RateLimited: 1},
		},
		{
			name:       "5xx burst",
			inject:     func(in *Injector[int]) { in.FailNext(2, http.StatusBadGateway) },
			want:       []int{502, 502, 200},
			wantCounts: Counts{Requests: 3, ServerErrors: 2},
		},
		{
			name: "throttling before the burst",
			inject: func(in *Injector[int]) {
				in.FailNext(1, http.StatusServiceUnavailable)
				in.RateLimitNext(2, time.Second)
			},
			want:           []int{429, 429, 503, 200},
			wantRetryAfter: "1",
			wantCounts:     Counts{Requests: 4, RateLimited: 2, ServerErrors: 1},
		},
		{
			name: "a later call replaces what is pending",
			inject: func(in *Injector[int]) {
				in.RateLimitNext(5, time.Second)
				in.RateLimitNext(1, 3*time.Second)
				in.FailNext(5, 500)
				in.FailNext(1, 504)
			},
			want:           []int{429, 504, 200},
			wantRetryAfter: "3",
			wantCounts:     Counts{Requests: 3, RateLimited: 1, ServerErrors: 1},
		},
		{
			name: "negative counts inject nothing",
			inject: func(in *Injector[int]) {
				in.RateLimitNext(-1, -time.Second)
				in.FailNext(-3, 500)
			},
			want:       []int{200},
			wantCounts: Counts{Requests: 1},
		},
		{
			name: "Clear",
			inject: func(in *Injector[int]) {
				in.RateLimitNext(3, time.Second)
				in.FailNext(3, 500)
				in.Clear()
			},
			want:       []int{200, 200},
			wantCounts: Counts{Requests: 2},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := NewInjector[int](testAPI)
			tc.inject(in)
			for i, want := range tc.want {
				rec := admitted(in)
				if rec.Code != want {
					t.Fatalf("request %d: status %d, want %d", i, rec.Code, want)
				}
				if want != 200 && !strings.HasPrefix(rec.Body.String(), "reject ") {
					t.Fatalf("request %d: body %q was not written by Reject", i, rec.Body)
				}
				if i == 0 && rec.Header().Get("Retry-After") != tc.wantRetryAfter {
					t.Fatalf("Retry-After %q, want %q", rec.Header().Get("Retry-After"), tc.wantRetryAfter)
				}
			}
			if got := in.Counts(); got != tc.wantCounts {
				t.Fatalf("counts %+v, want %+v", got, tc.wantCounts)
			}
		})
	}
}

func TestAdmitLatency(t *testing.T) {
	in := NewInjector[int](testAPI)
	in.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	if in.Admit(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)) {
		t.Fatal("a request whose client gave up during the latency was admitted")
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Fatalf("a request whose client gave up got an answer: %q", rec.Body)
	}

	in.SetLatency(30 * time.Millisecond)
	begin := time.Now()
	if rec := admitted(in); rec.Code != http.StatusOK {
		t.Fatalf("status %d under latency, want 200", rec.Code)
	}
	if waited := time.Since(begin); waited < 30*time.Millisecond {
		t.Fatalf("answered after %v, want at least the 30ms latency", waited)
	}

	in.SetLatency(-time.Second) // removes it, as zero does
	in.Clear()
	if got := in.Counts().Requests; got != 2 {
		t.Fatalf("requests %d, want 2 (the abandoned one counts)", got)
	}
}

func TestServePage(t *testing.T) {
	const page = `{"results":[1,2,3,4]}`
	cases := []struct {
		name       string
		fault      PageFault // zero: the page is whole
		renderErr  bool
		wantStatus int
		wantBody   string
		wantRender bool
		wantWhole  int64
		wantCounts Counts
	}{
		{"whole", 0, false, 200, page, true, 1, Counts{}},
		{"server error", PageServerError, false, 500, "reject Internal Server Error", false, 0, Counts{ServerErrors: 1}},
		{"malformed", PageMalformed, false, 200, page[:len(page)/2], true, 0, Counts{MalformedPages: 1}},
		{"render error", 0, true, 500, "error: no page", true, 0, Counts{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := NewInjector[string](testAPI)
			if tc.fault != 0 {
				in.BreakPage("p", tc.fault)
			}
			var whole atomic.Int64
			rendered := false
			rec := httptest.NewRecorder()
			in.ServePage(rec, "p", &whole, func() ([]byte, error) {
				rendered = true
				if tc.renderErr {
					return nil, errNoPage
				}
				return []byte(page), nil
			})
			if rec.Code != tc.wantStatus || rec.Body.String() != tc.wantBody {
				t.Fatalf("answer %d %q, want %d %q", rec.Code, rec.Body, tc.wantStatus, tc.wantBody)
			}
			if rendered != tc.wantRender {
				t.Fatalf("rendered %v, want %v", rendered, tc.wantRender)
			}
			if whole.Load() != tc.wantWhole || in.Counts() != tc.wantCounts {
				t.Fatalf("whole %d counts %+v, want %d and %+v", whole.Load(), in.Counts(), tc.wantWhole, tc.wantCounts)
			}
			if tc.wantStatus == 200 && rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", rec.Header().Get("Content-Type"))
			}
		})
	}
}

var errNoPage = errors.New("no page")

// TestBrokenPagesByKey checks that a broken page stays broken until repaired
// or cleared, and that other pages are whole meanwhile.
func TestBrokenPagesByKey(t *testing.T) {
	type key struct {
		list string
		row  int
	}
	in := NewInjector[key](testAPI)
	status := func(k key) int {
		var whole atomic.Int64
		rec := httptest.NewRecorder()
		in.ServePage(rec, k, &whole, func() ([]byte, error) { return []byte(`{}`), nil })
		return rec.Code
	}
	broken, other := key{"devices", 100}, key{"interfaces", 100}
	in.BreakPage(broken, PageServerError)
	for range 3 {
		if got := status(broken); got != 500 {
			t.Fatalf("broken page: status %d, want 500", got)
		}
	}
	if got := status(other); got != 200 {
		t.Fatalf("other page: status %d, want 200", got)
	}
	in.RepairPage(broken)
	if got := status(broken); got != 200 {
		t.Fatalf("repaired page: status %d, want 200", got)
	}
	in.BreakPage(broken, PageServerError)
	in.Clear()
	if got := status(broken); got != 200 {
		t.Fatalf("page after Clear: status %d, want 200", got)
	}
}

func TestFailNextStatus(t *testing.T) {
	cases := []struct {
		status    int
		wantPanic bool
	}{
		{499, true},
		{500, false},
		{599, false},
		{600, true},
		{404, true},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if tc.wantPanic != (r != nil) || tc.wantPanic && !strings.HasPrefix(msg, "testemu: FailNext needs a 5xx status") {
					t.Fatalf("FailNext(1, %d) panicked with %v, want a panic: %v", tc.status, r, tc.wantPanic)
				}
			}()
			NewInjector[int](testAPI).FailNext(1, tc.status)
		})
	}
}

func TestNewInjectorNeedsWriters(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("NewInjector without Error did not panic")
		}
	}()
	NewInjector[int](API{Name: "x", Reject: testAPI.Reject})
}

// TestConcurrentAdmit checks under the race detector that a burst is
// consumed exactly once by concurrent requests.
func TestConcurrentAdmit(t *testing.T) {
	in := NewInjector[int](testAPI)
	in.FailNext(50, http.StatusServiceUnavailable)
	in.RateLimitNext(30, 0)
	var failed, throttled, ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				switch admitted(in).Code {
				case http.StatusServiceUnavailable:
					failed.Add(1)
				case http.StatusTooManyRequests:
					throttled.Add(1)
				default:
					ok.Add(1)
				}
				in.BreakPage(1, PageMalformed)
				in.RepairPage(1)
			}
		})
	}
	wg.Wait()
	want := Counts{Requests: 200, RateLimited: 30, ServerErrors: 50}
	if failed.Load() != 50 || throttled.Load() != 30 || ok.Load() != 120 || in.Counts() != want {
		t.Fatalf("%d failed, %d throttled, %d ok, counts %+v; want 50, 30, 120 and %+v",
			failed.Load(), throttled.Load(), ok.Load(), in.Counts(), want)
	}
}
