package http

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/services/config"
)

// openAPIPaths reads the path templates of an OpenAPI document (JSON or YAML, version 2 or
// 3: the keys of its paths object).
func openAPIPaths(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: not an OpenAPI document: %w", file, err)
	}
	var out []string
	for p := range doc.Paths {
		if strings.HasPrefix(p, "/") {
			out = append(out, p)
		}
	}
	return out, nil
}

// orderRoutes puts templates with more literal segments first, so that /customers/search
// matches itself rather than /customers/{id} (as OpenAPI asks).
func orderRoutes(routes []string) []string {
	literals := func(r string) int {
		n := 0
		for _, s := range strings.Split(strings.Trim(r, "/"), "/") {
			if !(strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}")) {
				n++
			}
		}
		return n
	}
	out := append([]string(nil), routes...)
	sort.SliceStable(out, func(i, j int) bool { return literals(out[i]) > literals(out[j]) })
	return out
}

// matchRoute matches path against the resource's route templates (/customers/{id}): the
// first template whose literal segments match, and its parameters.
func matchRoute(be *config.HTTPBackend, path string) (string, map[string]string) {
	if len(be.Routes) == 0 {
		return "", nil
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, route := range be.Routes {
		rs := strings.Split(strings.Trim(route, "/"), "/")
		if len(rs) != len(segs) {
			continue
		}
		var params map[string]string
		ok := true
		for i, r := range rs {
			if len(r) > 2 && r[0] == '{' && r[len(r)-1] == '}' {
				if segs[i] == "" {
					ok = false
					break
				}
				if params == nil {
					params = map[string]string{}
				}
				params[r[1:len(r)-1]] = segs[i]
				continue
			}
			if r != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return route, params
		}
	}
	return "", nil
}
