package bus

import (
	"fmt"
	"slices"

	"github.com/gatehouse/gatehouse/schemas"
)

// Least privilege on NATS: what each component's credentials may publish and subscribe
// to, the one source of truth from which `gatehouse nats config` writes a nats-server
// configuration. Every subject a component uses is here because the code uses it; a
// component that needs a new one fails with a permissions violation in the split tests
// that run each target with its own credentials (integration TestLeastPrivilege).
//
// Only the provisioning user may create, update, delete or purge streams and buckets;
// a component binds to them (nats.streams: bind). Replies travel on each component's own
// inbox prefix (InboxPrefix), so one component cannot read another's replies.

// Permissions are one user's allow lists (everything else is denied) and, for publish,
// what is denied even within the allowed.
type Permissions struct {
	Publish     []string
	PublishDeny []string
	Subscribe   []string
	// AllowResponses lets a service answer requests sent to it (on the requester's reply
	// subject, once), without being allowed to publish on anyone's inbox otherwise.
	AllowResponses bool
}

// ProvisionUser is the user of `gatehouse nats provision`: it may create and update
// streams and buckets (and use the rest of JetStream's API), nothing else.
const ProvisionUser = "provision"

// PermissionTargets are the targets that connect to NATS with credentials of their own,
// and the provisioning user, in the order `gatehouse nats config` writes them.
func PermissionTargets() []string {
	return []string{"proxy-postgres", "proxy-ssh", "proxy-http", "policy", "approvals", "notifier", "ingest", "query", "sinks", ProvisionUser}
}

// InboxPrefix is the reply inbox prefix of a target's connections (nats.inbox_prefix).
func InboxPrefix(target string) string { return "_INBOX." + target }

// PermissionsFor returns the permissions of target's credentials.
func PermissionsFor(target string) (Permissions, error) {
	var p perms
	p.sub(InboxPrefix(target) + ".>")
	if target == ProvisionUser {
		p.pub("$JS.API.>")
		return p.done(), nil
	}
	// Every component binds to the streams at connect.
	p.pub(streamInfo(StreamAudit), streamInfo(StreamApprovals))
	revocations := func() { p.read(schemas.StreamRevoke) }
	webSessions := func() { p.kvWrite(BucketWebSessions); p.kvWrite(BucketWebPending) }
	desiredRead := func() { p.kvRead(BucketPolicies); p.kvRead(BucketResources) }
	configEvents := func() { p.pub(SubjectAudit + "." + ConfigResource + ".>") }
	switch target {
	case "proxy-postgres", "proxy-ssh", "proxy-http":
		revocations()
		desiredRead()
		// Its sessions' events, never a configuration record.
		p.pub(SubjectAudit + ".>")
		p.deny(SubjectAudit + "." + ConfigResource + ".>")
		p.kvWrite(BucketGateways)
		if target == "proxy-postgres" {
			p.kvWrite(BucketCatalogs)
		}
		p.pub(schemas.SubjectDecide, schemas.SubjectApprovalClaim)
		p.sub(schemas.SubjectPolicyRevision)
		// It asks for approval and records how a wait ended; deciding is the approvers'.
		for _, typ := range []string{schemas.TypeApprovalRequested, schemas.TypeApprovalExpired, schemas.TypeApprovalCancelled} {
			p.pub(ApprovalSubject("*", typ))
		}
		p.sub(ApprovalSubject("*", ">"))
	case "policy":
		revocations()
		webSessions()
		p.kvWrite(BucketPolicies)
		p.kvWrite(BucketResources)
		p.kvRead(BucketGrants)
		p.kvRead(BucketCatalogs)
		p.sub(schemas.SubjectDecide)
		p.pub(schemas.SubjectPolicyRevision, schemas.SubjectRevoke+".>")
		configEvents()
		p.responses()
	case "approvals":
		revocations()
		webSessions()
		p.read(StreamApprovals)
		p.pub(SubjectApprovals + ".>")
		p.sub(schemas.SubjectApprovalClaim, schemas.SubjectApprovalDecide)
		p.kvWrite(BucketGrants)
		p.pub(schemas.SubjectRevoke + ".>")
		configEvents()
		p.responses()
	case "notifier":
		p.read(StreamApprovals)
		p.pub(schemas.SubjectApprovalDecide)
	case "ingest":
		revocations()
		webSessions()
		desiredRead()
		p.read(StreamAudit)
		// The sweeper ends the sessions of a gateway that died, in their own trail.
		p.pub(SubjectAudit + ".>")
		p.kvWrite(BucketLocks)
		p.kvRead(BucketGateways)
	case "query":
		revocations()
		webSessions()
		p.kvRead(BucketGateways)
		// How far ingest has got (audit verify tells "not yet ingested" from "lost").
		p.pub("$JS.API.CONSUMER.INFO." + StreamAudit + ".ingest")
	case "sinks":
		p.read(StreamAudit)
	default:
		return Permissions{}, fmt.Errorf("no NATS permissions for target %q (one of %v)", target, PermissionTargets())
	}
	return p.done(), nil
}

type perms struct{ p Permissions }

func (p *perms) pub(s ...string)  { p.p.Publish = append(p.p.Publish, s...) }
func (p *perms) deny(s ...string) { p.p.PublishDeny = append(p.p.PublishDeny, s...) }
func (p *perms) sub(s ...string)  { p.p.Subscribe = append(p.p.Subscribe, s...) }
func (p *perms) responses()       { p.p.AllowResponses = true }

func streamInfo(stream string) string { return "$JS.API.STREAM.INFO." + stream }

// read is reading a stream: its info, consumers (ordered, durable) of it, their next
// messages, acks and flow control, direct and stored message gets. Nothing here changes
// the stream: no create, update, delete, purge or message delete.
func (p *perms) read(stream string) {
	p.pub(streamInfo(stream),
		"$JS.API.CONSUMER.CREATE."+stream, "$JS.API.CONSUMER.CREATE."+stream+".>",
		"$JS.API.CONSUMER.DURABLE.CREATE."+stream+".*",
		"$JS.API.CONSUMER.INFO."+stream+".*", "$JS.API.CONSUMER.DELETE."+stream+".*",
		"$JS.API.CONSUMER.MSG.NEXT."+stream+".*",
		"$JS.API.DIRECT.GET."+stream, "$JS.API.DIRECT.GET."+stream+".>", "$JS.API.STREAM.MSG.GET."+stream,
		"$JS.ACK."+stream+".>", "$JS.FC."+stream+".>")
}

func (p *perms) kvRead(bucket string) { p.read("KV_" + bucket) }

func (p *perms) kvWrite(bucket string) {
	p.kvRead(bucket)
	p.pub("$KV." + bucket + ".>")
}

func (p *perms) done() Permissions {
	for _, l := range []*[]string{&p.p.Publish, &p.p.PublishDeny, &p.p.Subscribe} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return p.p
}
