package policy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// Every input of an HTTP and a Kubernetes request is in the policy reference (the CLI's
// docs test reads engine.go and ssh.go; these maps are built here).
func TestDocsHTTPAndKubeInputs(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	require.NoError(t, err)
	var inputs []string
	for k := range httpValues(&schemas.HTTPRequest{}) {
		inputs = append(inputs, "request.http."+k)
	}
	for k := range kubeValues(&schemas.KubeRequest{}, "", &ShellInfo{}) {
		inputs = append(inputs, "request.kube."+k)
	}
	slices.Sort(inputs)
	require.Contains(t, inputs, "request.kube.command_line")
	for _, in := range inputs {
		assert.True(t, strings.Contains(string(doc), "`"+in+"`"), "docs/policy.md does not document the CEL input %s", in)
	}
}
