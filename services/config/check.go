package config

import (
	"fmt"
	"net"
	"strings"
)

// Errors collects validation problems, each with its field path.
type Errors []string

func (e Errors) Error() string {
	return "invalid config:\n  " + strings.Join(e, "\n  ")
}

// checker collects the problems the sections find, in the order Config.Validate checks
// them.
type checker struct {
	errs Errors
	// resources holds every name under resources (valid or not), set by
	// validateResources for the sections that refer to resources by name.
	resources map[string]bool
}

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) required(path, v string) {
	if v == "" {
		c.add(path, "required")
	}
}

func (c *checker) hostPort(path, v string) {
	if v == "" {
		c.add(path, "required (host:port)")
		return
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		c.add(path, "%q is not host:port: %v", v, err)
	}
}

func (c *checker) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// listItem is an item of a list section (resources, policies, ...), which checks itself.
type listItem[T any] interface {
	*T
	validate(path string, ck *checker)
}

// validateList checks the items of a list section, item i at path[i]: with first, when
// given, for what an item must not share with those before it (its name), then with the
// item's own validate.
func validateList[T any, P listItem[T]](path string, items []T, ck *checker, first func(path string, item P)) {
	for i := range items {
		p := fmt.Sprintf("%s[%d]", path, i)
		if first != nil {
			first(p, &items[i])
		}
		P(&items[i]).validate(p, ck)
	}
}

// validateUnique is validateList for a list whose items each need a name that no item
// before them has: key is the name's field, what the kind of item the messages say.
func validateUnique[T any, P listItem[T]](path, key, what string, items []T, ck *checker, name func(P) string) {
	seen := map[string]bool{}
	validateList(path, items, ck, func(p string, item P) {
		v := name(item)
		ck.required(p+"."+key, v)
		if seen[v] {
			ck.add(p+"."+key, "duplicate %s %q", what, v)
		}
		seen[v] = true
	})
}

// resourceRefs checks a list of resource names, where "*" means every resource.
func (c *checker) resourceRefs(path string, names []string) {
	for j, rn := range names {
		if rn != "*" && !c.resources[rn] {
			c.add(fmt.Sprintf("%s[%d]", path, j), "unknown resource %q", rn)
		}
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// validKey reports whether s can be a NATS KV key as it is: letters, digits and - _ . = /,
// not starting or ending with '.', at most 128 bytes.
func validKey(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r == '=' || r == '/' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// def sets *v to d when it is unset (the zero value).
func def[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}
