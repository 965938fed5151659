// Found by the attack round and fixed (was: high): the caller chooses its identity at an HTTP service. Through the plain HTTP
// profile the gateway strips only Authorization, the token header, Forwarded, X-Real-Ip,
// X-Forwarded-For/Host/Proto (ReverseProxy) and X-Gatehouse-*; it forwards verbatim
// X-Remote-User, Impersonate-User, X-Forwarded-User, X-Forwarded-Email,
// X-Forwarded-Preferred-Username, X-Auth-Request-User and Remote-User — the headers that
// auth-proxy-fronted services (Grafana auth.proxy, oauth2-proxy backends, Kubernetes-style
// front proxies, Apache REMOTE_USER setups) take as the authenticated user. Observed: the
// upstream received all seven with the caller's chosen values ("root", "system:admin",
// "admin"...). Promised: "the caller cannot choose its identity at the service (e.g.
// Kubernetes Impersonate-* headers, X-Remote-User, X-Forwarded-*, X-Gatehouse-*)". Only the
// kube profile refuses impersonate-/x-remote-. Also: X-Forwarded-Host is set from the
// caller's Host header (any value for a prefix-routed resource: "evil.example" reached the
// service), so services that build absolute links or redirects from it can be pointed at the
// caller's host.

package http_test

// Copy into proxy/http/ (it uses startAttack and rawRequest from proxy/http/attack_test.go) and run:
//   go test ./proxy/http/ -run TestAttackIdentityHeadersPlain -count=1 -v

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

// Attack: identity headers a service may trust (X-Remote-User, Impersonate-User,
// X-Forwarded-User/Email) sent by the caller through the plain HTTP profile.
func TestAttackIdentityHeadersPlain(t *testing.T) {
	e := start(t)
	hdrs := map[string]string{"X-Remote-User": "root", "Impersonate-User": "system:admin", "X-Forwarded-User": "admin",
		"X-Forwarded-Email": "admin@example.com", "X-Forwarded-Preferred-Username": "admin", "X-Auth-Request-User": "admin", "Remote-User": "admin"}
	args := []string{}
	for k, v := range hdrs {
		args = append(args, "-H", k+": "+v)
	}
	body, code, _ := e.curl(t, e.token, append(args, e.url+"/orders/x")...)
	require.Equal(t, 200, code, body)
	last := e.up.last()
	var leaked []string
	for k, v := range hdrs {
		if last.Header.Get(k) == v {
			leaked = append(leaked, k+": "+v)
		}
	}
	// X-Forwarded-Host is the Host the caller sent, whatever it is (prefix-routed resources
	// take any Host): a service building links from it builds them to the caller's host.
	_, code, _ = e.curl(t, e.token, "-H", "Host: evil.example", e.url+"/orders/x")
	if code == 200 && e.up.last().Header.Get("X-Forwarded-Host") == "evil.example" {
		leaked = append(leaked, "X-Forwarded-Host: evil.example (from Host)")
	}
	require.Empty(t, leaked, "the service got identity headers the caller chose")
}
