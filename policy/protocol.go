// Which protocol a decision request is for, and whether that is its resource's.

package policy

import (
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// protocol is what a decision request asks about.
type protocol int

const (
	protoSQL  protocol = iota + 1 // a sql part: a resource of type postgres
	protoSSH                      // an ssh part: type ssh
	protoHTTP                     // an http part alone: type http
	protoKube                     // an http part and a kube part: type kubernetes
)

// resourceTypes is the resource type of each protocol.
var resourceTypes = map[protocol]string{protoSQL: "postgres", protoSSH: "ssh", protoHTTP: "http", protoKube: "kubernetes"}

var protocolNames = map[protocol]string{protoSQL: "a SQL statement", protoSSH: "an SSH request", protoHTTP: "an HTTP request", protoKube: "a Kubernetes API request"}

// protocolOf is the protocol of a request, or why it is refused: it has no protocol part,
// several, a kube part without its http part, or a protocol that is not its resource's
// type (rules written for a kubernetes resource's kube part would not be evaluated on an
// http part alone). A sql or ssh part for a resource of no type is decided, as callers
// that predate resource types send.
func protocolOf(req *schemas.DecisionRequest) (protocol, string) {
	var parts []string
	var p protocol
	if req.SQL != nil {
		parts, p = append(parts, "sql"), protoSQL
	}
	if req.SSH != nil {
		parts, p = append(parts, "ssh"), protoSSH
	}
	if req.HTTP != nil {
		parts, p = append(parts, "http"), protoHTTP
		if req.Kube != nil {
			p = protoKube
		}
	}
	const failClosed = "; refusing (fail closed)"
	switch {
	case req.Kube != nil && req.HTTP == nil:
		return 0, "the decision request has a kube part without its http part (a Kubernetes API request carries both)" + failClosed
	case len(parts) == 0:
		return 0, "the decision request has no sql, ssh or http part: the policy decides SQL statements, SSH requests, HTTP requests and Kubernetes API requests" + failClosed
	case len(parts) > 1:
		return 0, "the decision request has more than one protocol part (" + strings.Join(parts, ", ") + ")" + failClosed
	}
	want, typ := resourceTypes[p], req.Resource.Type
	if typ == want || typ == "" && (p == protoSQL || p == protoSSH) {
		return p, ""
	}
	name := clip(req.Resource.Name, 64)
	if typ == "" {
		return 0, fmt.Sprintf("resource %q has no type, and the request is %s, for a resource of type %s%s", name, protocolNames[p], want, failClosed)
	}
	return 0, fmt.Sprintf("resource %q is of type %q, and the request is %s, for a resource of type %s%s", name, clip(typ, 64), protocolNames[p], want, failClosed)
}
