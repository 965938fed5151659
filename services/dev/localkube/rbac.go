package localkube

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
)

const rbacAPI = "/apis/rbac.authorization.k8s.io/v1"

// createGatewayRBAC lets GatewayUser impersonate users and groups, and nothing else.
func (c *Cluster) createGatewayRBAC(ctx context.Context) error {
	if err := c.create(ctx, rbacAPI+"/clusterroles", obj{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": meta(GatewayClusterRole),
		"rules": []obj{{
			"apiGroups": []string{""},
			"resources": []string{"users", "groups"},
			"verbs":     []string{"impersonate"},
		}},
	}); err != nil {
		return err
	}
	return c.create(ctx, rbacAPI+"/clusterrolebindings", obj{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": meta(GatewayClusterRole),
		"roleRef":  obj{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": GatewayClusterRole},
		"subjects": []obj{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": GatewayUser}},
	})
}

// clusterRole is the part of a ClusterRole that aggregation reads.
type clusterRole struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Rules           []obj `json:"rules"`
	AggregationRule *struct {
		ClusterRoleSelectors []struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"clusterRoleSelectors"`
	} `json:"aggregationRule"`
}

// aggregateClusterRoles does once what kube-controller-manager's clusterrole-aggregation
// controller does all the time, which no one runs here: it gives each ClusterRole with an
// aggregationRule (admin, edit, view among the built-in ones) the rules of the ClusterRoles
// its selectors match, so that binding a user to view works as in a real cluster. Roles
// created later are not aggregated. Only matchLabels selectors are read.
func (c *Cluster) aggregateClusterRoles(ctx context.Context) error {
	var list struct{ Items []clusterRole }
	if err := c.Do(ctx, http.MethodGet, rbacAPI+"/clusterroles", "", nil, &list); err != nil {
		return err
	}
	// Aggregated roles may aggregate each other (view into edit into admin): repeat until
	// nothing changes. The items come sorted by name, as the controller orders its sources.
	changed := map[string]bool{}
	for pass := 0; pass < 10; pass++ {
		again := false
		for i := range list.Items {
			r := &list.Items[i]
			if r.AggregationRule == nil {
				continue
			}
			var rules []obj
			seen := map[string]bool{}
			for _, src := range list.Items {
				if src.Metadata.Name == r.Metadata.Name || !selected(src.Metadata.Labels, r) {
					continue
				}
				for _, rule := range src.Rules {
					key, _ := json.Marshal(rule) // maps marshal with sorted keys
					if !seen[string(key)] {
						seen[string(key)] = true
						rules = append(rules, rule)
					}
				}
			}
			if !sameRules(rules, r.Rules) {
				r.Rules, changed[r.Metadata.Name], again = rules, true, true
			}
		}
		if !again {
			break
		}
	}
	for _, r := range list.Items {
		if !changed[r.Metadata.Name] {
			continue
		}
		rules := r.Rules
		if rules == nil {
			rules = []obj{}
		}
		if err := c.Do(ctx, http.MethodPatch, rbacAPI+"/clusterroles/"+r.Metadata.Name,
			"application/merge-patch+json", obj{"rules": rules}, nil); err != nil {
			return err
		}
	}
	return nil
}

func selected(labels map[string]string, r *clusterRole) bool {
	for _, sel := range r.AggregationRule.ClusterRoleSelectors {
		if len(sel.MatchLabels) == 0 {
			continue
		}
		ok := true
		for k, v := range sel.MatchLabels {
			if labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func sameRules(a, b []obj) bool {
	return slices.EqualFunc(a, b, func(x, y obj) bool {
		kx, _ := json.Marshal(x)
		ky, _ := json.Marshal(y)
		return string(kx) == string(ky)
	})
}
