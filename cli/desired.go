package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/services/desired"
)

// desiredCmd is `policy apply|get` and `resource apply|get`: the desired state in KV,
// through the API, with an admin token.
func desiredCmd(kind string, args []string, stdout, stderr io.Writer) error {
	sub := args[0]
	path := map[string]string{"policy": "/api/v1/policies", "resource": "/api/v1/resources"}[kind]
	fs := newFlags(kind+" "+sub, stdout)
	file := fs.String("f", "", "apply: YAML file with "+strings.TrimPrefix(path, "/api/v1/")+": [...] (a config file will do; other sections are ignored)")
	api := addAPIFlags(fs, "admin", "in dev: gatehouse token --dev --sub admin --groups gatehouse-admins")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("%s %s takes no arguments (got %q)", kind, sub, pos)}
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	var body io.Reader
	method := http.MethodGet
	if sub == "apply" {
		if *file == "" {
			return usageError{kind + " apply needs -f FILE"}
		}
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		body, method = bytes.NewReader(b), http.MethodPut
	}
	resp, err := c.do(method, path, body, "application/yaml")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if sub == "get" {
		_, err = stdout.Write(out)
		return err
	}
	var res desired.ApplyResult
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	if len(res.Changed) == 0 {
		fmt.Fprintln(stdout, "no change")
	}
	for _, c := range res.Changed {
		fmt.Fprintf(stdout, "%s %s %s\n", c.Kind, c.Name, c.Action)
	}
	if res.Revision != 0 {
		fmt.Fprintf(stdout, "policy revision %d\n", res.Revision)
	}
	return nil
}

func resourceCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "apply" && args[0] != "get") {
		return usageError{"resource needs a subcommand: apply -f FILE, or get"}
	}
	return desiredCmd("resource", args, stdout, stderr)
}
