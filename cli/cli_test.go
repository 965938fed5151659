package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeConfig writes a variant of the demo config next to a copy of its test catalog.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	cat, err := os.ReadFile("../deploy/demo.catalog.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "demo.catalog.json"), cat, 0o644))
	f := filepath.Join(dir, "gatehouse.yaml")
	require.NoError(t, os.WriteFile(f, []byte(content), 0o644))
	return f
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// The shipped demo policies pass their own test cases: this is what CI checks for policies.
func TestDemoPolicyTestsPass(t *testing.T) {
	code, out, errOut := run("policy", "test", "-f", "../deploy/gatehouse.dev.yaml")
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "31 of 31 policy test cases passed")
	require.NotContains(t, out, "FAIL")
}

func TestPolicyTestFailsOnAWrongExpectation(t *testing.T) {
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	bad := strings.Replace(string(src), `sql: "drop table orders", expect: deny`, `sql: "drop table orders", expect: allow`, 1)
	f := writeConfig(t, bad)
	code, out, _ := run("policy", "test", "-f", f)
	require.Equal(t, 1, code)
	require.Contains(t, out, "FAIL  svc-orders may not drop orders: DENY by default deny")
	require.Contains(t, out, "30 of 31 policy test cases passed")
}

func TestPolicyTestOneStatement(t *testing.T) {
	code, out, errOut := run("policy", "test", "--config", "../deploy/gatehouse.dev.yaml", "--as", "svc-orders",
		"--groups", "orders-readers", "--resource", "demo", "delete from customers")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "DENY by default deny: no rule allows delete on resource demo")
	require.Contains(t, out, "tables: public.customers")

	code, out, _ = run("policy", "test", "--config", "../deploy/gatehouse.dev.yaml", "--as", "dba-oncall",
		"--groups", "dba", "--resource", "demo", "drop database demo")
	require.Equal(t, 0, code)
	require.Contains(t, out, "DENY by demo-baseline/no-drop-database: dropping a database is never allowed")
}

func TestPolicyThatDoesNotCompileIsRefusedWithItsPosition(t *testing.T) {
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	bad := strings.Replace(string(src), `when: '"dba" in identity.groups || grants.exists(g, g.role == "dba")'`, `when: '"dba" in identity.groupz &&'`, 1)
	f := writeConfig(t, bad)
	code, _, errOut := run("policy", "test", "-f", f)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "policies do not compile")
	require.Contains(t, errOut, `policies[1].rules[4].when: policy "demo-orders" rule "dba-anything"`)
	require.Contains(t, errOut, "ERROR: <input>:1:")
}

func TestUsageErrors(t *testing.T) {
	code, _, errOut := run("nope")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "nope"`)
	t.Setenv("GATEHOUSE_TOKEN", "")
	for _, args := range [][]string{{"sessions", "list"}, {"revocations"}, {"revoke", "--session", "x", "--reason", "r"}, {"grants", "list"},
		{"approvals", "list"}, {"audit", "verify"}, {"audit", "retention"}, {"evidence", "access"}, {"policy", "get"}} {
		code, _, errOut = run(args...)
		require.Equal(t, 2, code, args)
		require.Contains(t, errOut, "no token", args)
	}
	code, _, errOut = run("run")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "run needs --config FILE")
	code, out, _ := run("run", "--list-targets")
	require.Equal(t, 0, code)
	require.Contains(t, out, "proxy-postgres")
}

func TestInvalidConfigIsRefusedWithFieldPath(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(f, []byte("resources:\n  - {name: demo, type: postgres, postgres: {database: d, user: u}}\n"), 0o644))
	code, _, errOut := run("run", "--config", f, "--target=policy")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "resources[0].postgres.address: required (host:port)")
}

// Without a file, policy test uses the running gateway's policies (with a token; see the
// integration exercise), else the demo's from a checkout, else says what it needs.
func TestPolicyTestSaysWhereItsPoliciesCameFrom(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	t.Chdir("..")
	code, out, errOut := run("policy", "test", "--as", "svc-orders", "--groups", "orders-readers", "--resource", "demo", "delete from customers")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "policy test: policies from deploy/gatehouse.dev.yaml\n", errOut)
	require.Contains(t, out, "DENY by default deny")

	t.Chdir(t.TempDir())
	code, _, errOut = run("policy", "test", "--as", "svc-orders", "--resource", "demo", "select 1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "policy test needs policies: pass --config FILE")
	require.Contains(t, errOut, "or an admin token (--token or GATEHOUSE_TOKEN)")
}
