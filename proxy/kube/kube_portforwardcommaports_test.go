// Found by the attack round and fixed (was: medium; policy-dependent): port-forward decided on a port list the API server reads
// differently. Prepare sets request.kube.ports = x.Query["ports"] (each query value as is);
// the API server converts the parameter with metav1.Convert_Slice_string_To_Slice_int32
// (k8s.io/apimachinery v0.37.2 pkg/apis/meta/v1/conversion.go:285), which splits each value
// on commas. A rule refusing a port (`"2222" in request.kube.ports`) is bypassed with
// ports=8080,2222: observed, ports=2222 and ports=8080&ports=2222 -> 403, ports=8080,2222 ->
// 101 from the API server (upgrade accepted; the recorded kube attributes say
// ports ["8080,2222"]). An allow-list rule (`request.kube.ports.all(p, p == "8080")`) fails
// closed, so the break needs a deny-list style rule. Fix: split ports values on ',' (and
// refuse what does not parse as a port) before deciding.
//
// Copy into proxy/kube/ (it uses startAttackWith from proxy/kube/attack_test.go) and run:
//   go test ./proxy/kube/ -run TestAttackPortForwardCommaPorts -count=1 -v

package kube_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// Attack (candidate): a port list in one query value. The API server splits ports=a,b on
// commas (metav1.Convert_Slice_string_To_Slice_int32); a rule that refuses port 2222 reads
// request.kube.ports as given.
func TestAttackPortForwardCommaPorts(t *testing.T) {
	pol := []config.Policy{{Name: "cluster", Resources: []string{"prod-cluster"}, Rules: []config.Rule{
		{Name: "pf", Effect: "allow", When: `request.kube.subresource == "portforward"`},
		{Name: "no-ssh", Effect: "deny", When: `request.kube.subresource == "portforward" && "2222" in request.kube.ports`, Reason: "no port 2222"},
	}}}
	e := startAttackWith(t, pol, false)
	dial := func(q string) int {
		d := websocket.Dialer{TLSClientConfig: e.tlsConfig(t), Subprotocols: []string{"v4.channel.k8s.io", "portforward.k8s.io"}, HandshakeTimeout: 20 * time.Second}
		c, resp, err := d.Dial("wss://"+e.addr+"/k8s/prod/api/v1/namespaces/default/pods/shell/portforward?"+q, http.Header{"Authorization": {"Bearer " + e.token}})
		if err == nil {
			c.Close()
			return 101
		}
		if resp != nil {
			return resp.StatusCode
		}
		return 0
	}
	require.Equal(t, 403, dial("ports=2222"))
	code := dial("ports=8080,2222")
	t.Logf("ports=8080,2222: %d", code)
	require.Equal(t, 403, dial("ports=8080&ports=2222"))
	require.NotEqual(t, 101, code, "the policy refused port 2222; the API server was asked to forward it")
}
