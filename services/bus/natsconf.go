package bus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
)

// ServerUser is one user of a nats-server configuration: a target (or the provisioning
// user) and the public nkey it authenticates with.
type ServerUser struct {
	Target string
	NKey   string
}

// ServerAuthorization is the authorization block of a nats-server configuration with one
// user per entry, each with PermissionsFor its target. Users authenticate by nkey: the
// server holds public keys only.
func ServerAuthorization(users []ServerUser) (string, error) {
	var b strings.Builder
	b.WriteString("# Gatehouse components, least privilege (gatehouse nats config).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		if !nkeys.IsValidPublicUserKey(u.NKey) {
			return "", fmt.Errorf("user %s: %q is not a public user nkey (U...)", u.Target, u.NKey)
		}
		p, err := PermissionsFor(u.Target)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s (nats.inbox_prefix: %s)\n", u.Target, InboxPrefix(u.Target))
		fmt.Fprintf(&b, "    {\n      nkey: %s\n      permissions: {\n", u.NKey)
		fmt.Fprintf(&b, "        publish: { allow: %s", list(p.Publish))
		if len(p.PublishDeny) > 0 {
			fmt.Fprintf(&b, ", deny: %s", list(p.PublishDeny))
		}
		b.WriteString(" }\n")
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(p.Subscribe))
		if p.AllowResponses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

// list is a nats-server config array of quoted subjects ("$" would otherwise start a
// variable reference).
func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// UserSeed returns the public key of the user nkey seed in file, creating the file (mode
// 0600, a new seed) when it does not exist.
func UserSeed(file string) (string, error) {
	seed, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", err
		}
		if seed, err = kp.Seed(); err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(file, append(seed, '\n'), 0o600); err != nil {
			return "", fmt.Errorf("write nkey seed: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", fmt.Errorf("nkey seed %s: %v", file, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("nkey seed %s: not a user seed (SU...)", file)
	}
	return pub, nil
}
