package cli

import (
	"encoding/json"
	"io"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// catalogCmd prints a resource's catalog as the gateway holds it.
func catalogCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "get" {
		return usageError{"catalog needs a subcommand: get --resource NAME"}
	}
	fs := newFlags("catalog get", stdout)
	resource := fs.String("resource", "", "the resource whose catalog to print")
	api := addAPIFlags(fs, "admin or auditor", "in dev: gatehouse token --dev --sub auditor --groups auditors")
	fs.Bool("json", true, "print JSON (the only format)")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if *resource == "" || len(pos) > 0 {
		return usageError{"catalog get needs --resource NAME and no arguments"}
	}
	c, err := api.client(time.Minute)
	if err != nil {
		return err
	}
	var cat schemas.Catalog
	if err := c.get("/api/v1/catalogs/"+url.PathEscape(*resource), &cat); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", " ")
	return enc.Encode(&cat)
}
