package localkube

import (
	"fmt"
	"os"
	"strconv"
)

// writeKubeconfigs writes AdminKubeconfig (the admin's client certificate) and
// GatewayKubeconfig (the gateway's token), each with the one cluster and context.
func (c *Cluster) writeKubeconfigs() error {
	c.AdminKubeconfig = c.path("admin.kubeconfig")
	admin := fmt.Sprintf("    client-certificate: %s\n    client-key: %s\n", quote(c.AdminCertFile), quote(c.AdminKeyFile))
	if err := c.writeKubeconfig(c.AdminKubeconfig, "admin", admin); err != nil {
		return err
	}
	c.GatewayKubeconfig = c.path("gateway.kubeconfig")
	return c.writeKubeconfig(c.GatewayKubeconfig, "gateway", fmt.Sprintf("    token: %s\n", quote(c.GatewayToken)))
}

func (c *Cluster) writeKubeconfig(path, user, credentials string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
%scontexts:
- name: localkube
  context:
    cluster: localkube
    user: %s
    namespace: default
current-context: localkube
`, quote(c.URL), quote(c.CAFile), user, credentials, user)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// quote makes s a YAML scalar whatever it holds (a JSON string is one).
func quote(s string) string { return strconv.Quote(s) }
