package integration

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	slacknotify "github.com/gatehouse/gatehouse/notifier"
	"github.com/gatehouse/gatehouse/services/config"
)

// TestSlackClickRunsTheHeldStatement measures, end to end, the time from an approver's
// click in (a local fake of) Slack to the held statement's result at the client.
func TestSlackClickRunsTheHeldStatement(t *testing.T) {
	pg, pwFile := demoPostgres(t)
	var mu sync.Mutex
	var ids []string
	idRE := regexp.MustCompile(`"action_id":"approve"[^}]*"value":"([0-9a-f-]{36})"`)
	fake := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			if m := idRE.FindStringSubmatch(r.Form.Get("blocks")); m != nil {
				mu.Lock()
				ids = append(ids, m[1])
				mu.Unlock()
			}
			_, _ = io.WriteString(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
		})
		c.Handle("/chat.update", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
		})
		c.Handle("/users.info", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"ok":true,"user":{"id":"U1","name":"approver","profile":{"email":"approver-1@example.com"}}}`)
		})
	})
	fake.Start()
	t.Cleanup(fake.Stop)
	dir := t.TempDir()
	secret := "slack-signing-secret-for-tests"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("xoxb-test"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte(secret), 0o600))

	t.Setenv("GATEHOUSE_DATA_DIR", dir)
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_SSH_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_HTTP_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", pg.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_PASSWORD_FILE", pwFile)
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Slack = &config.Slack{BotTokenFile: filepath.Join(dir, "token"), SigningSecretFile: filepath.Join(dir, "secret"),
		APIURL: fake.GetAPIURL(), Channel: "C1", Users: []config.SlackUser{{Email: "approver-1@example.com", Subject: "approver-1", Groups: []string{"approvers"}}}}
	require.NoError(t, cfg.Validate())
	a := runApp(t, cfg, "nats", "dev-issuer", "policy", "approvals", "proxy-postgres")
	base := "http://" + a.HTTPAddr()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The notifier runs apart from the approvals service, meeting it only over NATS
	// (GH_APPROVALS, gh.approvals-decide), as `gatehouse run --target notifier` does.
	ncfg := *cfg
	ncfg.NATS.URL = a.NATSURL()
	notifier := runApp(t, &ncfg, "notifier")
	slackBase := "http://" + notifier.HTTPAddr()
	host, port, err := net.SplitHostPort(a.ListenAddr("postgres"))
	require.NoError(t, err)
	g := &gateway{issuer: base}
	dba := g.token(t, "dba-oncall", "dba")

	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=dba password=%s sslmode=disable", host, port, dba))
	require.NoError(t, err)
	defer c.Close(ctx)
	var lat []time.Duration
	for i := range 10 {
		res := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, fmt.Sprintf("update customers set name = 'Ada %d' where id = 1", i)).ReadAll()
			res <- err
		}()
		var id string
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(ids) > i {
				id = ids[i]
				return true
			}
			return false
		}, 10*time.Second, time.Millisecond)
		payload, _ := json.Marshal(map[string]any{"type": "block_actions", "trigger_id": "t", "user": map[string]any{"id": "U1"},
			"channel": map[string]any{"id": "C1"}, "actions": []map[string]any{{"action_id": "approve", "block_id": "decision", "value": id, "type": "button"}}})
		body := url.Values{"payload": {string(payload)}}.Encode()
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte("v0:" + ts + ":" + body))
		req, _ := http.NewRequest(http.MethodPost, slackBase+slacknotify.Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
		clicked := time.Now()
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		select {
		case err := <-res:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("approval %s: the held statement did not run after the click", id)
		}
		lat = append(lat, time.Since(clicked))
	}
	slices.Sort(lat)
	t.Logf("Slack click to held statement's result, %d runs: p50 %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])
	r, err := c.Exec(ctx, "select name from customers where id = 1").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "Ada 9", string(r[0].Rows[0][0]))
}
