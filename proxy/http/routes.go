package http

import (
	"strings"

	"github.com/gatehouse/gatehouse/services/config"
)

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
