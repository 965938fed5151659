// Found by the attack round and fixed (was: medium-high; depends on the service): method override headers are forwarded, so the
// policy decides one method and the service runs another. GET /orders/1 with
// X-HTTP-Method-Override: DELETE (or X-HTTP-Method, X-Method-Override) is allowed by rule
// "reads" and forwarded with the header; a service behind a method-override middleware
// (Express method-override, Symfony/Laravel/Rails-style _method handling, ASP.NET
// HttpMethodOverride, Google APIs) runs DELETE, bypassing rule "no-deletes". Observed: 200
// "service ran DELETE /orders/1" for all three headers. Promised: "the request the policy
// decides is exactly the request the service receives — same method". Fix idea: refuse (or
// strip) X-HTTP-Method-Override/X-HTTP-Method/X-Method-Override, and _method in a query or
// form body, or decide on the overridden method.

package http_test

// Copy into proxy/http/ (it uses startAttack and rawRequest from proxy/http/attack_test.go) and run:
//   go test ./proxy/http/ -run TestAttackMethodOverride -count=1 -v

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

var _ = schemas.TypeHttpDone
var _ = time.Second
var _ = strings.Contains
var _ = fmt.Sprint
var _ = http.StatusOK

// Attack: method override headers. The policy decides GET (reads are allowed); a service
// behind a method-override middleware (Express method-override, Rails, Laravel, Symfony's
// http_method_override, ASP.NET) runs DELETE.
func TestAttackMethodOverride(t *testing.T) {
	e := startAttack(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
			if v := r.Header.Get(h); v != "" {
				m = v
			}
		}
		fmt.Fprintf(w, "service ran %s %s", m, r.URL.Path)
	}))
	var got []string
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		body, code, _ := e.curl(t, e.token, "-H", h+": DELETE", e.url+"/attack/orders/1")
		t.Logf("%s: %d %s", h, code, body)
		if code == 200 && strings.Contains(body, "service ran DELETE") {
			got = append(got, h)
		}
	}
	require.Empty(t, got, "the policy decided GET; the service ran DELETE (rule no-deletes bypassed)")
}
