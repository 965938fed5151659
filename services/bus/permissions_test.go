package bus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// authServer starts a real nats-server from the configuration `gatehouse nats config`
// writes (bus.ServerAuthorization), with every target's nkey seed in keys.
func authServer(t *testing.T) (url, keys string) {
	keys = t.TempDir()
	var users []bus.ServerUser
	for _, target := range bus.PermissionTargets() {
		pub, err := bus.UserSeed(filepath.Join(keys, target+".nk"))
		require.NoError(t, err)
		users = append(users, bus.ServerUser{Target: target, NKey: pub})
	}
	auth, err := bus.ServerAuthorization(users)
	require.NoError(t, err)
	srv := bustest.StartConfig(t, "host: 127.0.0.1\nport: -1\njetstream { store_dir: \"$STORE\" }\n"+auth)
	return srv.URL(), keys
}

// connectAs connects with target's credentials and inbox prefix; bind says whether it
// only binds to the streams (as least-privilege components do).
func connectAs(t *testing.T, url, keys, target string, bind bool, extra ...nats.Option) (*bus.Bus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, url, target, bus.Options{Bind: bind, StreamMaxBytes: 1 << 30,
		Security: bus.Security{NKeyFile: filepath.Join(keys, target+".nk"), InboxPrefix: bus.InboxPrefix(target)}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), extra...)
	if err == nil {
		t.Cleanup(b.NC.Close)
	}
	return b, err
}

// provision makes what `gatehouse nats provision` makes that these tests use.
func provision(t *testing.T, url, keys string) *bus.Bus {
	ctx := context.Background()
	b, err := connectAs(t, url, keys, bus.ProvisionUser, false)
	require.NoError(t, err)
	require.NoError(t, bus.EnsureRevokeStream(ctx, b.JS))
	for _, bucket := range []string{bus.BucketPolicies, bus.BucketResources, bus.BucketGrants, bus.BucketCatalogs, bus.BucketGateways, bus.BucketLocks} {
		_, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
		require.NoError(t, err, bucket)
	}
	return b
}

// TestPermissionsRefuseWhatAProxyMayNotDo runs a proxy's, the policy service's and the
// notifier's credentials against a real nats-server with the generated configuration:
// what they need works, and what a proxy must never do is refused by the server (a
// permission widened to ">" would let each of these through and fail the test).
func TestPermissionsRefuseWhatAProxyMayNotDo(t *testing.T) {
	url, keys := authServer(t)
	admin := provision(t, url, keys)
	ctx := context.Background()

	// Components' credentials may not create streams: they bind.
	start := time.Now()
	_, err := connectAs(t, url, keys, "proxy-postgres", false)
	require.ErrorIs(t, err, bus.ErrDenied)
	require.ErrorContains(t, err, "gatehouse nats provision")
	t.Logf("refused create after %v: %v", time.Since(start), err)

	// Replies reach a component on its own inbox prefix only: another's is refused at once.
	_, err = connectAs(t, url, keys, "proxy-postgres", true, nats.CustomInboxPrefix(bus.InboxPrefix("policy")))
	require.ErrorContains(t, err, "nats.inbox_prefix: these credentials may not receive replies on _INBOX.policy.")

	proxy, err := connectAs(t, url, keys, "proxy-postgres", true, nats.PermissionErrOnSubscribe(true))
	require.NoError(t, err)
	policy, err := connectAs(t, url, keys, "policy", true)
	require.NoError(t, err)

	// Allowed: its sessions' events, decisions (answered on its own inbox), desired state
	// read, its gateway key, approval requests.
	_, err = proxy.JS.Publish(ctx, bus.AuditSubject("demo", "s1", "db.query"), []byte(`{}`))
	require.NoError(t, err)
	sub, err := policy.NC.QueueSubscribe(schemas.SubjectDecide, schemas.QueueDecide, func(m *nats.Msg) { _ = m.Respond([]byte("allow")) })
	require.NoError(t, err)
	require.NoError(t, policy.NC.Flush())
	reply, err := proxy.NC.Request(schemas.SubjectDecide, []byte(`{}`), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "allow", string(reply.Data))
	require.NoError(t, sub.Unsubscribe())
	policies, err := proxy.JS.KeyValue(ctx, bus.BucketPolicies)
	require.NoError(t, err)
	_, err = policies.Get(ctx, "nothing")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	gws, err := bus.OpenGateways(ctx, proxy.JS, time.Minute)
	require.NoError(t, err)
	_, err = gws.Put(ctx, "gw1", []byte(`{}`))
	require.NoError(t, err)
	_, err = proxy.JS.Publish(ctx, bus.ApprovalSubject("a1", schemas.TypeApprovalRequested), []byte(`{}`))
	require.NoError(t, err)

	refused := func(what string, err error) {
		t.Helper()
		require.Error(t, err, what+" must be refused")
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	// Refused: an approval decision.
	_, err = proxy.JS.Publish(short(), bus.ApprovalSubject("a1", schemas.TypeApprovalDecided), []byte(`{}`))
	refused("publishing approval.decided", err)
	approvals, err := connectAs(t, url, keys, "approvals", true)
	require.NoError(t, err)
	_, err = approvals.JS.Publish(ctx, bus.ApprovalSubject("a1", schemas.TypeApprovalDecided), []byte(`probe`))
	require.NoError(t, err) // the approvals service may: only the proxy was refused
	st, err := admin.JS.Stream(ctx, bus.StreamApprovals)
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, bus.ApprovalSubject("a1", schemas.TypeApprovalDecided))
	require.NoError(t, err)
	require.Equal(t, "probe", string(m.Data), "the proxy's decision must not be stored")
	// Refused: a decision request on the approvals' subject.
	_, err = proxy.NC.Request(schemas.SubjectApprovalDecide, []byte(`{}`), time.Second)
	refused("requesting an approval decision", err)
	// Refused: writing a policy.
	_, err = policies.Put(short(), "allow-all", []byte("rules: []"))
	refused("putting a policy", err)
	akv, err := admin.JS.KeyValue(ctx, bus.BucketPolicies)
	require.NoError(t, err)
	_, err = akv.Get(ctx, "allow-all")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	// Refused: writing a grant.
	grantsKV, err := proxy.JS.KeyValue(short(), bus.BucketGrants)
	if err == nil {
		_, err = grantsKV.Put(short(), "g1", []byte(`{}`))
	}
	refused("putting a grant", err)
	// Refused: a configuration record in the audit trail.
	_, err = proxy.JS.Publish(short(), bus.AuditSubject(bus.ConfigResource, "x", schemas.TypePolicyChanged), []byte(`{}`))
	refused("publishing a _config record", err)
	// Refused: deleting, purging, updating GH_AUDIT, deleting one of its messages.
	refused("deleting GH_AUDIT", proxy.JS.DeleteStream(short(), bus.StreamAudit))
	audit, err := proxy.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	refused("purging GH_AUDIT", audit.Purge(short()))
	refused("deleting an event", audit.DeleteMsg(short(), 1))
	_, err = jetstreamOf(t, proxy).UpdateStream(short(), jetstream.StreamConfig{Name: bus.StreamAudit, Subjects: []string{bus.SubjectAudit + ".>"}, MaxMsgs: 1})
	refused("shrinking GH_AUDIT", err)
	info, err := admin.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.CachedInfo().State.Msgs, "GH_AUDIT keeps its event")
	require.EqualValues(t, -1, info.CachedInfo().Config.MaxMsgs)
	// Refused: reading the audit trail, and another component's inbox.
	_, err = proxy.JS.OrderedConsumer(short(), bus.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err == nil {
		var c jetstream.Consumer
		c, _ = proxy.JS.OrderedConsumer(short(), bus.StreamAudit, jetstream.OrderedConsumerConfig{})
		_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
	}
	refused("reading GH_AUDIT", err)
	for _, subject := range []string{bus.InboxPrefix("policy") + ".>", "_INBOX.>", ">"} {
		s, err := proxy.NC.SubscribeSync(subject)
		require.NoError(t, err)
		_, err = s.NextMsg(2 * time.Second)
		require.ErrorIs(t, err, nats.ErrPermissionViolation, "subscribing to %s", subject)
	}

	// The notifier reads GH_APPROVALS and asks the approvals service to decide; it may not
	// record a decision.
	notifier, err := connectAs(t, url, keys, "notifier", true)
	require.NoError(t, err)
	oc, err := notifier.JS.OrderedConsumer(ctx, bus.StreamApprovals, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	first, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.Equal(t, bus.ApprovalSubject("a1", schemas.TypeApprovalRequested), first.Subject())
	asub, err := approvals.NC.QueueSubscribe(schemas.SubjectApprovalDecide, "approvals", func(m *nats.Msg) { _ = m.Respond([]byte("ok")) })
	require.NoError(t, err)
	require.NoError(t, approvals.NC.Flush())
	reply, err = notifier.NC.Request(schemas.SubjectApprovalDecide, []byte(`{}`), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "ok", string(reply.Data))
	require.NoError(t, asub.Unsubscribe())

	// A sink consumes GH_AUDIT with a durable consumer of its own.
	sinks, err := connectAs(t, url, keys, "sinks", true)
	require.NoError(t, err)
	cons, err := sinks.JS.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{Durable: "sink-siem", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	_, err = sinks.JS.Publish(short(), bus.AuditSubject("demo", "s2", "db.query"), []byte(`{}`))
	refused("a sink publishing an event", err)

	_, err = notifier.JS.Publish(short(), bus.ApprovalSubject("a2", schemas.TypeApprovalDecided), []byte(`{}`))
	refused("the notifier publishing approval.decided", err)
}

// jetstreamOf is b's JetStream without the bus's provisioner, as a rogue client has it.
func jetstreamOf(t *testing.T, b *bus.Bus) jetstream.JetStream {
	js, err := jetstream.New(b.NC)
	require.NoError(t, err)
	return js
}

// TestPermissionsAreNarrow holds the permission sets to their shape: only the
// provisioning user reaches JetStream's API as a whole, no component may change or
// delete a stream, and no component may read or write everything.
func TestPermissionsAreNarrow(t *testing.T) {
	for _, target := range bus.PermissionTargets() {
		p, err := bus.PermissionsFor(target)
		require.NoError(t, err)
		require.Contains(t, p.Subscribe, bus.InboxPrefix(target)+".>", target)
		if target == bus.ProvisionUser {
			continue
		}
		for _, s := range append(append([]string{}, p.Publish...), p.Subscribe...) {
			require.NotContains(t, []string{">", "$JS.>", "$JS.API.>", "$KV.>", "_INBOX.>", "gh.>", "$JS.API.STREAM.>", "$JS.API.CONSUMER.>"}, s, target)
			for _, op := range []string{"STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "$JS.API.INFO"} {
				require.False(t, strings.Contains(s, op), "%s may %s: %s", target, op, s)
			}
		}
	}
	_, err := bus.PermissionsFor("all")
	require.Error(t, err)
	proxy, _ := bus.PermissionsFor("proxy-postgres")
	require.Contains(t, proxy.PublishDeny, "gh.audit._config.>")
	require.False(t, proxy.AllowResponses)
	require.NotContains(t, proxy.Publish, "$KV."+bus.BucketPolicies+".>")
	require.NotContains(t, proxy.Publish, schemas.SubjectApprovalDecide)
	require.False(t, errors.Is(nil, bus.ErrDenied))
}
