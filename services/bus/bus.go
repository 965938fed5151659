// Package bus is Gatehouse's seam: the NATS connection, the JetStream streams and KV
// buckets every component shares, and their names.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
)

// Names shared by all components: the contract between them.
const (
	// The streams' names, as the contract (schemas, messages.yaml) defines them.
	StreamAudit      = schemas.StreamAudit
	SubjectAudit     = schemas.SubjectAudit
	StreamApprovals  = schemas.StreamApprovals
	SubjectApprovals = schemas.SubjectApprovals
	SubjectRevoke    = schemas.SubjectRevoke
	// SubjectDecide, QueueDecide and SubjectPolicyRevision are the decision's names, as
	// the contract (schemas, messages.yaml) defines them.
	SubjectDecide         = schemas.SubjectDecide
	QueueDecide           = schemas.QueueDecide
	SubjectPolicyRevision = schemas.SubjectPolicyRevision
	// KV buckets of desired state: policies and resources by name.
	BucketPolicies  = "gh_policies"
	BucketResources = "gh_resources"
	BucketGrants    = "gh_grants"
	BucketLocks     = "gh_locks"
	// BucketWebSessions holds the web console's browser sessions (by the SHA-256 of their
	// cookie), sign-ins under way and the SAML assertions already used.
	BucketWebSessions = "gh_web_sessions"
	// BucketWebPending holds the web console's sign-ins under way and the SAML assertions
	// already used, for WebPendingTTL: anyone may start a sign-in, so these records are
	// short-lived and bounded apart from the sessions.
	BucketWebPending = "gh_web_pending"
	WebPendingTTL    = 15 * time.Minute
	// BucketCatalogs holds each PostgreSQL resource's catalog (schemas.Catalog), by
	// resource name: put by the proxies, read by the policy service.
	BucketCatalogs = "gh_catalogs"
	// ConfigResource is the resource token of the audit subject of configuration changes.
	ConfigResource = "_config"
)

// AuditSubject is the subject of one session event.
func AuditSubject(resource, session, typ string) string {
	return SubjectAudit + "." + resource + "." + session + "." + typ
}

// Options configure the connection and the streams.
type Options struct {
	StreamMaxBytes  int64
	DuplicateWindow time.Duration
	// Replicas is the replica count of every stream and KV bucket Gatehouse creates (0 is 1).
	Replicas int
	// Bind: create nothing, only bind to the streams and buckets a provisioning step made
	// (`gatehouse nats provision`); least-privilege credentials may not create them.
	Bind bool
	// Security is how to authenticate and check the server.
	Security Security
}

// A connection whose server has answered none of MaxPingsOut PINGs sent PingInterval
// apart is stale: the client drops it and connects to another server of the cluster. So a
// server that stops answering without closing the connection (partitioned away, packets
// dropped, a hung host) is left within (MaxPingsOut+1)×PingInterval, 4–6 s. With
// nats.go's defaults (2 minutes, 2) a component stayed on such a server for up to 6
// minutes — a proxy there refusing every statement that needs a decision or a strict
// acknowledgement all that time (TestStalledServerIsLeftInSeconds; the chaos suite's
// "NATS node partitioned away").
const (
	PingInterval = 2 * time.Second
	MaxPingsOut  = 2
)

// PublishAckTimeout bounds the wait for JetStream's acknowledgement of an asynchronous
// publish: past it the publish fails (jetstream.ErrAsyncPublishTimeout) and the publisher
// sends it again under the same message id. nats.go waits for ever by default, and an
// acknowledgement can be lost without any error: a stream leader killed after it took a
// message and before it answered, reached through another node. The proxy's publisher
// confirms in order, so one lost acknowledgement held every later event — the spool
// filled, strict statements hung and new sessions were refused — until the proxy's own
// connection happened to drop (the chaos suite's kill -9 of GH_AUDIT's leader: 100 s).
const PublishAckTimeout = 5 * time.Second

// Bus is a connection to NATS with JetStream.
type Bus struct {
	NC *nats.Conn
	// JS is JetStream as every component sees it: whatever it creates (streams, KV
	// buckets) gets the bus's replicas, and with Options.Bind "create" binds to what
	// exists (see provisioner).
	JS jetstream.JetStream
}

// Connect connects to url (one server, or several of a cluster comma-separated) and makes
// sure the streams exist (with Options.Bind: that they exist). name identifies the client
// in NATS monitoring. extra options may make the connection in-process (an embedded
// server).
func Connect(ctx context.Context, url, name string, opts Options, log *slog.Logger, extra ...nats.Option) (*Bus, error) {
	sec, err := opts.Security.Options()
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	denied := &violations{}
	nopts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(MaxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		// A permission violation means this component tried what its credentials do not
		// allow: a bug, or credentials of another component. The subject says which.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			denied.notify(err)
			if sub != nil {
				log.Error("nats error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("nats error", "err", err)
		}),
	}, sec...)
	nc, err := nats.Connect(url, append(nopts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w%s", redactURLs(url), err, connectHint(err, opts.Security))
	}
	if !opts.Security.Empty() {
		if err := checkInbox(nc); err != nil {
			nc.Close()
			return nil, err
		}
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &Bus{NC: nc, JS: &provisioner{JetStream: js, replicas: max(opts.Replicas, 1), bind: opts.Bind, denied: denied}}
	if err := b.ensureStreams(ctx, opts); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// checkInbox makes sure replies can reach this connection: with least-privilege users
// each may subscribe to its own inbox prefix only, and a wrong nats.inbox_prefix would
// otherwise show as every request timing out. The server answers a refused subscription
// before the flush's PONG.
func checkInbox(nc *nats.Conn) error {
	sub, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		return fmt.Errorf("nats inbox: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("nats inbox: %w", err)
	}
	if last := nc.LastError(); last != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), sub.Subject) {
		return fmt.Errorf("nats.inbox_prefix: these credentials may not receive replies on %s (set the prefix `gatehouse nats config` prints for this component)", sub.Subject)
	}
	return nil
}

func (b *Bus) ensureStreams(ctx context.Context, o Options) error {
	for _, sc := range streams(o) {
		// Several components start at once in split mode; the create is idempotent.
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			if _, err = b.JS.CreateOrUpdateStream(ctx, sc); err == nil {
				break
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotProvisioned) || errors.Is(err, ErrDenied) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// streams are the streams every component needs, as Connect creates them.
func streams(o Options) []jetstream.StreamConfig {
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.StreamMaxBytes == 0 {
		o.StreamMaxBytes = 8 << 30
	}
	var out []jetstream.StreamConfig
	for _, sc := range []jetstream.StreamConfig{
		{Name: StreamAudit, Subjects: []string{SubjectAudit + ".>"}},
		{Name: StreamApprovals, Subjects: []string{SubjectApprovals + ".>"}},
	} {
		sc.Storage = jetstream.FileStorage
		sc.Retention = jetstream.LimitsPolicy
		sc.Discard = jetstream.DiscardOld
		sc.MaxBytes = o.StreamMaxBytes
		sc.Duplicates = o.DuplicateWindow
		out = append(out, sc)
	}
	return out
}

// Close drains the connection: pending publishes are flushed first.
func (b *Bus) Close() {
	if err := b.NC.Drain(); err != nil {
		b.NC.Close()
	}
}

// RecordControl puts a record that belongs to no session into GH_AUDIT: a one-event
// session of resource _config (desired-state changes, revocations, grants, retention runs).
// It fills in what e leaves empty (id, time, code) and the chain fields.
func RecordControl(ctx context.Context, js jetstream.JetStream, e schemas.Event) error {
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		e.ID = id.String()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC().Truncate(time.Microsecond)
	}
	if e.Code == "" {
		e.Code = schemas.Codes[e.Type]
	}
	e.SessionID, e.Seq, e.Resource, e.PrevHash = e.ID, 1, ConfigResource, ""
	var err error
	if e.Hash, err = e.ComputeHash(); err != nil {
		return err
	}
	if _, err := js.Publish(ctx, AuditSubject(ConfigResource, e.SessionID, e.Type), e.AppendJSON(nil), jetstream.WithMsgID(e.ID)); err != nil {
		return fmt.Errorf("record %s: %w", e.Type, err)
	}
	return nil
}

// JSErrCodeMsgIDInProcess is JetStream's "duplicate message id is in process" (409): a
// message with this id was proposed to the stream and not yet applied. nats.go names no
// constant for it.
const JSErrCodeMsgIDInProcess jetstream.ErrorCode = 10158

// IsMsgIDInProcess says whether a publish was refused because a message with its id is in
// process in the stream.
func IsMsgIDInProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == JSErrCodeMsgIDInProcess
}

// Claim takes key in the locks bucket for whoever calls first: true for the first caller,
// false for every later one (until the key expires with the bucket's week-long TTL). Keys
// name a piece of work and its period ("retention.<unix time of the interval>"), so that
// of several replicas exactly one does it.
func Claim(ctx context.Context, js jetstream.JetStream, key, owner string) (bool, error) {
	kv, err := OpenLocks(ctx, js)
	if err != nil {
		return false, err
	}
	if _, err := kv.Create(ctx, key, []byte(owner)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("claim %s: %w", key, err)
	}
	return true, nil
}

// OpenLocks opens (creates) the locks bucket of Claim.
func OpenLocks(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketLocks, History: 1, TTL: 7 * 24 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("locks bucket: %w", err)
	}
	return kv, nil
}
