package notifier_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	gslack "github.com/gatehouse/gatehouse/notifier"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
)

const signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// fakeSlack records what the notifier asks of Slack's Web API: slacktest's server, with
// the methods it lacks (chat.update, views.open) and users that map to identities.
type fakeSlack struct {
	mu         sync.Mutex
	posts      []url.Values
	updates    []url.Values
	views      []url.Values
	ephemerals []url.Values
}

func (f *fakeSlack) record(dst *[]url.Values, answer string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		form := url.Values{}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			// Some methods (views.open) are called with a JSON body.
			var m map[string]json.RawMessage
			_ = json.NewDecoder(r.Body).Decode(&m)
			for k, v := range m {
				var str string
				if json.Unmarshal(v, &str) == nil {
					form.Set(k, str)
				} else {
					form.Set(k, string(v))
				}
			}
		} else {
			_ = r.ParseForm()
			form = r.Form
		}
		f.mu.Lock()
		*dst = append(*dst, form)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}
}

func (f *fakeSlack) last(dst *[]url.Values) url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(*dst) == 0 {
		return nil
	}
	return (*dst)[len(*dst)-1]
}

func (f *fakeSlack) count(dst *[]url.Values) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(*dst)
}

var emails = map[string]string{"U1": "approver-1@example.com", "U2": "svc@example.com", "U3": "stranger@example.com"}

func start(t *testing.T) (*fakeSlack, *approvals.Service, string, *bus.Bus) {
	t.Helper()
	f := &fakeSlack{}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.record(&f.posts, `{"ok":true,"channel":"C123","ts":"1700000000.000100"}`))
		c.Handle("/chat.update", f.record(&f.updates, `{"ok":true,"channel":"C123","ts":"1700000000.000100"}`))
		c.Handle("/views.open", f.record(&f.views, `{"ok":true,"view":{"id":"V1"}}`))
		c.Handle("/chat.postEphemeral", f.record(&f.ephemerals, `{"ok":true,"message_ts":"1700000000.000200"}`))
		c.Handle("/users.info", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			id := r.Form.Get("user")
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"ok":true,"user":{"id":%q,"name":%q,"profile":{"email":%q}}}`, id, strings.ToLower(id), emails[id])
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	tokenFile, secretFile := filepath.Join(dir, "token"), filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(tokenFile, []byte("xoxb-test-token\n"), 0o600))
	require.NoError(t, os.WriteFile(secretFile, []byte(signingSecret), 0o600))
	cfg := &config.Slack{BotTokenFile: tokenFile, SigningSecretFile: secretFile, APIURL: srv.GetAPIURL(), Channel: "C-default",
		Channels: map[string]string{"demo": "C-db-approvals"}, Owners: map[string]string{"dba-oncall": "U-owner"},
		Users: []config.SlackUser{{Email: "approver-1@example.com", Subject: "approver-1", Groups: []string{"approvers"}},
			{Email: "svc@example.com", Subject: "svc-orders", Groups: []string{"orders-readers"}}}}

	b := bustest.Connect(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := &approvals.Service{JS: b.JS, NC: b.NC, Log: log}
	// The notifier meets the approvals service only over NATS: GH_APPROVALS and
	// gh.approvals-decide.
	n, err := gslack.New(cfg, b.NC, b.JS, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, svc.Start(ctx))
	go func() { _ = svc.Run(ctx) }()
	go func() { _ = n.Run(ctx) }()
	go func() { _ = n.Follow(ctx) }()
	e := echo.New()
	n.Register(e)
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	return f, svc, hs.URL + gslack.Path, b
}

func request(t *testing.T, b *bus.Bus, stmt string) string {
	t.Helper()
	id := approvals.NewID()
	e, err := approvals.Event(schemas.TypeApprovalRequested, schemas.Identity{Subject: "dba-oncall", Kind: "human"}, "demo", &schemas.ApprovalRequested{
		ApprovalID: id, Kind: "statement", Statement: stmt, Labels: []string{"env=prod"}, Policy: "demo-orders", Rule: "customer-writes-need-approval",
		Reason: "changing customer records needs a second pair of eyes", Approvers: []string{"approvers"}, Required: 1,
		Deadline: time.Now().Add(time.Hour), Mode: "hold"}, time.Now())
	require.NoError(t, err)
	require.NoError(t, approvals.Publish(context.Background(), b.JS, id, e, ""))
	return id
}

// callback builds an interaction callback as Slack sends it: form-encoded payload, signed
// with v0 HMAC-SHA256 over "v0:timestamp:body".
func callback(t *testing.T, endpoint string, payload any, ts time.Time, secret string) (*http.Response, time.Duration) {
	t.Helper()
	b, err := json.Marshal(payload)
	require.NoError(t, err)
	body := url.Values{"payload": {string(b)}}.Encode()
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + stamp + ":" + body))
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, time.Since(start)
}

func click(user, action, id string) map[string]any {
	return map[string]any{"type": "block_actions", "trigger_id": "trigger-" + user, "user": map[string]any{"id": user},
		"channel": map[string]any{"id": "C-db-approvals"},
		"actions": []map[string]any{{"action_id": action, "block_id": "decision", "value": id, "type": "button"}}}
}

func TestApprovalInSlack(t *testing.T) {
	f, svc, endpoint, b := start(t)
	id := request(t, b, "update customers set name = 'x' where id = 1 -- ``` not a code fence")

	// The message: channel of the resource, who, what, rule and reason, deadline, buttons.
	require.Eventually(t, func() bool { return f.count(&f.posts) == 1 }, 5*time.Second, 10*time.Millisecond)
	post := f.last(&f.posts)
	require.Equal(t, "C-db-approvals", post.Get("channel"))
	blocks := post.Get("blocks")
	for _, want := range []string{"dba-oncall", "update customers set name = 'x' where id = 1", "demo-orders / customer-writes-need-approval",
		"env=prod", "changing customer records", "Deadline", `"action_id":"approve"`, `"style":"primary"`, `"action_id":"deny"`, `"style":"danger"`, id} {
		require.Contains(t, blocks, want)
	}
	require.NotContains(t, blocks, "-- ``` not", "backticks cannot break out of the code block")

	// Anything not signed by Slack, with the right secret, within five minutes, is refused.
	resp, _ := callback(t, endpoint, click("U1", "approve", id), time.Now(), "wrong-secret")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = callback(t, endpoint, click("U1", "approve", id), time.Now().Add(-6*time.Minute), signingSecret)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	plain, err := http.Post(endpoint, "application/x-www-form-urlencoded", strings.NewReader("payload={}"))
	require.NoError(t, err)
	plain.Body.Close()
	require.Equal(t, http.StatusUnauthorized, plain.StatusCode)
	a, _ := svc.Get(id)
	require.Equal(t, approvals.Pending, a.Status)

	// A click from someone who may not approve is refused, told to them alone.
	for user, why := range map[string]string{"U2": "svc-orders is not in an approver group", "U3": "is not a known approver"} {
		n := f.count(&f.ephemerals)
		resp, _ = callback(t, endpoint, click(user, "approve", id), time.Now(), signingSecret)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Eventually(t, func() bool { return f.count(&f.ephemerals) == n+1 }, 5*time.Second, 10*time.Millisecond)
		e := f.last(&f.ephemerals)
		require.Equal(t, user, e.Get("user"))
		require.Contains(t, e.Get("text"), why)
	}
	a, _ = svc.Get(id)
	require.Equal(t, approvals.Pending, a.Status)

	// The approver's click: answered within Slack's 3 seconds, the approval is approved and
	// the message updated with who and when.
	clicked := time.Now()
	resp, took := callback(t, endpoint, click("U1", "approve", id), time.Now(), signingSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Less(t, took, 3*time.Second)
	require.Eventually(t, func() bool { a, _ := svc.Get(id); return a.Status == approvals.Approved }, 5*time.Second, time.Millisecond)
	t.Logf("Slack click answered in %v, approval recorded %v after the click", took, time.Since(clicked))
	require.Eventually(t, func() bool { return f.count(&f.updates) == 1 }, 5*time.Second, 10*time.Millisecond)
	up := f.last(&f.updates)
	require.Equal(t, "1700000000.000100", up.Get("ts"))
	require.Contains(t, up.Get("blocks"), "Approved by approver-1")
	require.NotContains(t, up.Get("blocks"), `"action_id":"approve"`, "the buttons are gone")
	// The same click again (Slack retries) counts once.
	resp, _ = callback(t, endpoint, click("U1", "approve", id), time.Now(), signingSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	time.Sleep(200 * time.Millisecond)
	a, _ = svc.Get(id)
	require.Len(t, a.Approvals, 1)

	// Deny asks for a reason in a modal; its submission denies, and the message says so.
	id2 := request(t, b, "delete from customers where id = 2")
	require.Eventually(t, func() bool { return f.count(&f.posts) == 3 }, 5*time.Second, 10*time.Millisecond)
	resp, _ = callback(t, endpoint, click("U1", "deny", id2), time.Now(), signingSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, f.count(&f.views), "the modal opens before the answer (the trigger lasts 3 seconds)")
	view := f.last(&f.views)
	require.Equal(t, "trigger-U1", view.Get("trigger_id"))
	var modal struct {
		PrivateMetadata string `json:"private_metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(view.Get("view")), &modal))
	submit := func(reason string) *http.Response {
		resp, _ := callback(t, endpoint, map[string]any{"type": "view_submission", "user": map[string]any{"id": "U1"},
			"view": map[string]any{"private_metadata": modal.PrivateMetadata, "state": map[string]any{"values": map[string]any{
				"reason": map[string]any{"reason": map[string]any{"type": "plain_text_input", "value": reason}}}}}}, time.Now(), signingSecret)
		return resp
	}
	require.Equal(t, http.StatusOK, submit("  ").StatusCode)
	a, _ = svc.Get(id2)
	require.Equal(t, approvals.Pending, a.Status, "no reason, no denial")
	require.Equal(t, http.StatusOK, submit("not during the freeze").StatusCode)
	require.Eventually(t, func() bool { a, _ := svc.Get(id2); return a.Status == approvals.Denied }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return f.count(&f.updates) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Contains(t, f.last(&f.updates).Get("blocks"), "Denied by approver-1")
	require.Contains(t, f.last(&f.updates).Get("blocks"), "not during the freeze")

	// The requester's owner was told of both outcomes, directly.
	require.Eventually(t, func() bool { return f.count(&f.posts) == 4 }, 5*time.Second, 10*time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	var dms []string
	for _, p := range f.posts {
		if p.Get("channel") == "U-owner" {
			dms = append(dms, p.Get("text"))
		}
	}
	require.Len(t, dms, 2)
	require.Contains(t, dms[0], "Approved by approver-1")
	require.Contains(t, dms[1], "Denied by approver-1")
}
