// Found by the attack round and fixed (was: high): exec decided on stdin/tty the API server does not read. Prepare sets
// request.kube.stdin/tty only for the values "true" and "1"; the API server converts query
// booleans with runtime.Convert_Slice_string_To_bool (k8s.io/apimachinery v0.37.2
// pkg/runtime/conversion.go:70), for which every value but "0" and "false" (any case) is
// true — "TRUE", "True", "yes", "on", and the empty string. A policy that refuses
// interactive exec (deny when request.kube.stdin || request.kube.tty) is bypassed with
// stdin=TRUE: observed, the honest stdin=true is refused with 403, and
// `wss://GW/k8s/prod/api/v1/namespaces/default/pods/shell/exec?command=cat&container=main&stdout=true&stdin=TRUE`
// (v5.channel.k8s.io) runs cat with the caller's stdin, which comes back on stdout
// ("typed-through-the-gateway"). With tty=TRUE the session is a terminal at the API server
// while the gateway's recorder, reading Kube.Tty=false, records the keystrokes only as a
// SHA-256 (promise 5: a terminal exec's input is recorded as keystrokes). Fix: parse these
// query booleans as the API server does (false only for absent, "0", "false" any case).
//
// Copy into proxy/kube/ (it uses startAttack and wsExec from proxy/kube/attack_test.go) and run:
//   go test ./proxy/kube/ -run TestAttackExecBoolSpelling -count=1 -v

package kube_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Attack: exec with stdin=TRUE / tty=yes. The API server reads any value but "0" and
// "false" (any case) as true; the gateway reads only "true" and "1".
func TestAttackExecBoolSpelling(t *testing.T) {
	e := startAttack(t)
	// The honest spelling is refused by the rule on request.kube.stdin.
	_, code, err := e.wsExec(t, "command=cat&container=main&stdin=true&stdout=true", "x\n")
	require.Error(t, err)
	require.Equal(t, 403, code)
	for _, q := range []string{"stdin=TRUE", "stdin=yes", "stdin=", "stdin=True&tty=on"} {
		out, code, err := e.wsExec(t, "command=cat&container=main&stdout=true&"+q, "typed-through-the-gateway\n")
		t.Logf("%s: code %d err %v out %q", q, code, err, out)
		require.NotContains(t, out, "typed-through-the-gateway", "%s: the policy refused exec with stdin, and the API server ran cat with the caller's stdin", q)
	}
}
