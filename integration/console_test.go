package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/services/dev/browsertest"
)

// browser is a headless Chromium signed in to the console (or about to be).
type browser struct{ *browsertest.Browser }

func newBrowser(t *testing.T, base, name string) *browser {
	return &browser{browsertest.New(t, base, name)}
}

// consoleMe is GET /api/v1/me as the console's pages read it.
type consoleMe struct {
	Subject string   `json:"subject"`
	Name    string   `json:"name"`
	Groups  []string `json:"groups"`
	Roles   []string `json:"roles"`
	Method  string   `json:"method"`
	CSRF    string   `json:"csrf"`
}

// me asks the API who the browser is signed in as (status, and the answer on 200).
func (b *browser) me() (int, consoleMe) {
	b.T.Helper()
	var r struct {
		Status int       `json:"status"`
		Me     consoleMe `json:"me"`
	}
	raw := browsertest.Eval[json.RawMessage](b.Browser, `fetch('/api/v1/me').then(async r => ({status: r.status, me: r.ok ? await r.json() : {}}))`)
	require.NoError(b.T, json.Unmarshal(raw, &r))
	return r.Status, r.Me
}

// signInOIDC signs the browser in through the development issuer's sign-in page as one of
// its demo people, starting from path; it ends on path.
func (b *browser) signInOIDC(path, person string) {
	b.T.Helper()
	b.Open(path, `a[href^="/auth/oidc/login"]`)
	require.Contains(b.T, b.Location(), "/auth/login?next=")
	b.Run(chromedp.Click(chromedp.CSS(`a[href^="/auth/oidc/login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name="pick"][value="`+person+`"]`)))
	require.Contains(b.T, b.Location(), "/dev/oidc/authorize")
	require.Contains(b.T, b.Location(), "code_challenge_method=S256", "the console signs in without PKCE")
	b.Run(chromedp.Click(chromedp.CSS(`button[name="pick"][value="` + person + `"]`)))
	b.WaitJS(`location.pathname === ` + browsertest.JSString(strings.SplitN(path, "?", 2)[0]) + ` && document.readyState === "complete"`)
	code, me := b.me()
	require.Equal(b.T, http.StatusOK, code)
	require.Equal(b.T, person, me.Name)
	require.Equal(b.T, "oidc", me.Method)
	require.NotEmpty(b.T, me.CSRF)
}

// TestConsole drives the web console in headless Chromium against the whole platform
// (target all, the shipped demo config): sign-in, the pages, and what must be refused.
func TestConsole(t *testing.T) {
	g, _ := startAllInOne(t, "../deploy/gatehouse.dev.yaml")
	base := g.api

	t.Run("SignInWithOIDC", func(t *testing.T) {
		b := newBrowser(t, base, "oidc")
		b.signInOIDC("/sessions", "bob@example.com")
		_, me := b.me()
		require.Contains(t, me.Roles, "auditor")

		// Sign-out ends the session: the cookie the browser had no longer works.
		cookie := browsertest.Eval[string](b.Browser, `document.cookie`)
		require.NotContains(t, cookie, "gh_session", "the session cookie is readable by scripts")
		b.Run(chromedp.Click(chromedp.CSS(`[data-testid="logout"]`)), chromedp.WaitVisible(chromedp.CSS(`.auth-card`)))
		require.Contains(t, b.Text(`.auth-card`), "signed out")
		code, _ := b.me()
		require.Equal(t, http.StatusUnauthorized, code)
	})

	t.Run("Approvals", func(t *testing.T) {
		alice := newBrowser(t, base, "approver")
		alice.signInOIDC("/approvals", "alice@example.com")
		dba := g.token(t, "dba-oncall", "dba")

		// Approved in the console: the waiting psql goes on and its statement runs.
		stmt := "update customers set name = 'Ada (console)' where id = 1"
		done := g.psqlAsync(t, dba, "dba", stmt)
		id := alice.approvalFor(stmt)
		alice.Shot("approvals")
		alice.Accessible("approvals")
		card := `[data-testid="approval"][data-approval-id="` + id + `"]`
		alice.Run(chromedp.SendKeys(chromedp.CSS(card+` [data-testid="approval-reason"]`), "ticket OPS-1"),
			chromedp.Click(chromedp.CSS(card+` [data-testid="approve"]`)))
		r := <-done
		require.NoError(t, r.err, r.stderr)
		require.Contains(t, r.stdout, "UPDATE 1")
		// The decision is recorded as the console's, by alice, with the reason.
		a := g.approval(t, id)
		require.Equal(t, "approved", a.Status)
		require.Len(t, a.Approvals, 1)
		require.Equal(t, "console", a.Approvals[0].Via)
		require.Equal(t, "alice@example.com", a.Approvals[0].By)
		require.Equal(t, "ticket OPS-1", a.Approvals[0].Reason)
		// It leaves the pending list and shows among the recently decided.
		alice.WaitJS(`!document.querySelector('` + card + `')`)
		alice.WaitText(`[data-testid="approvals-recent"]`, "ticket OPS-1")

		// Denied: psql gets the refusal with the reason.
		stmt = "update customers set name = 'Ada (denied)' where id = 1"
		done = g.psqlAsync(t, dba, "dba", stmt)
		id = alice.approvalFor(stmt)
		card = `[data-testid="approval"][data-approval-id="` + id + `"]`
		// A denial needs a reason: without one the page asks for it and sends nothing.
		alice.Run(chromedp.Click(chromedp.CSS(card + ` [data-testid="deny"]`)))
		alice.WaitText(card+` [data-testid="approval-error"]`, "needs a reason")
		alice.Run(chromedp.SendKeys(chromedp.CSS(card+` [data-testid="approval-reason"]`), "not during the freeze"),
			chromedp.Click(chromedp.CSS(card+` [data-testid="deny"]`)))
		r = <-done
		require.Error(t, r.err)
		require.Contains(t, r.stderr, "not during the freeze")
		a = g.approval(t, id)
		require.Equal(t, "denied", a.Status)
		require.Equal(t, "console", a.Denial.Via)

		// An auditor sees approvals but may not decide them; a state change without the
		// CSRF token is refused whoever sends it.
		bob := newBrowser(t, base, "auditor")
		bob.signInOIDC("/approvals", "bob@example.com")
		stmt = "update customers set name = 'Ada (auditor)' where id = 1"
		done = g.psqlAsync(t, dba, "dba", stmt)
		id = alice.approvalFor(stmt)
		_, me := bob.me()
		code, body := bob.Fetch(http.MethodPost, "/api/v1/approvals/"+id+"/approve", `{"reason":"lgtm"}`,
			map[string]string{"Content-Type": "application/json", "X-CSRF-Token": me.CSRF})
		require.Equal(t, http.StatusForbidden, code, body)
		code, body = alice.Fetch(http.MethodPost, "/api/v1/approvals/"+id+"/approve", `{"reason":"lgtm"}`,
			map[string]string{"Content-Type": "application/json"})
		require.Equal(t, http.StatusForbidden, code, body)
		require.Contains(t, body, "CSRF")
		require.Equal(t, "pending", g.approval(t, id).Status, "a refused decision changed the approval")
		// Decided by someone else (here through the API): the page drops it by itself.
		card = `[data-testid="approval"][data-approval-id="` + id + `"]`
		require.Equal(t, 0, cliMain(t, "approvals", "deny", id, "--reason", "decided elsewhere", "--url", g.approvalsAPI, "--token", g.token(t, "approver-2", "approvers")))
		alice.WaitJS(`!document.querySelector('` + card + `')`)
		<-done

		// Revoked, an approver approves nothing more, in the console or with a token, and
		// the browser session ends.
		admin := g.token(t, "admin-1", "gatehouse-admins")
		_, aliceMe := alice.me()
		require.Equal(t, 0, cliMain(t, "revoke", "--identity", "alice@example.com", "--reason", "left the team", "--url", base, "--token", admin))
		lifted := false
		t.Cleanup(func() { // the later subtests sign alice in
			if !lifted {
				cliMain(t, "revoke", "--identity", "alice@example.com", "--lift", "--reason", "back", "--url", base, "--token", admin)
			}
		})
		stmt = "update customers set name = 'Ada (revoked)' where id = 1"
		done = g.psqlAsync(t, dba, "dba", stmt)
		id = bob.approvalFor(stmt)
		// Revocations reach every process within moments: wait with a token, not the browser.
		aliceToken := g.token(t, "alice@example.com", "approvers")
		require.Eventually(t, func() bool {
			status, _ := g.apiGet(t, aliceToken, "/api/v1/approvals")
			return status == http.StatusForbidden
		}, 30*time.Second, 20*time.Millisecond)
		// The browser session may already be gone (the console ends it when the revocation
		// reaches it: 401, signed out) or not yet (the API refuses the revoked identity: 403).
		code, body = alice.Fetch(http.MethodPost, "/api/v1/approvals/"+id+"/approve", `{"reason":"still here"}`,
			map[string]string{"Content-Type": "application/json", "X-CSRF-Token": aliceMe.CSRF})
		if code != http.StatusUnauthorized {
			require.Equal(t, http.StatusForbidden, code, body)
			require.Contains(t, body, "revoked: left the team")
		}
		require.Eventually(t, func() bool {
			code, _ := alice.me()
			return code == http.StatusUnauthorized
		}, 30*time.Second, 20*time.Millisecond, "the revoked person's browser session goes on")
		require.Equal(t, "pending", g.approval(t, id).Status)
		require.Equal(t, 0, cliMain(t, "approvals", "deny", id, "--reason", "cleanup", "--url", g.approvalsAPI, "--token", g.token(t, "approver-2", "approvers")))
		<-done
		require.Equal(t, 0, cliMain(t, "revoke", "--identity", "alice@example.com", "--lift", "--reason", "back", "--url", base, "--token", admin))
		lifted = true
	})

	t.Run("Pages", func(t *testing.T) {
		// carol is an admin, an auditor and an approver: every page shows everything.
		b := newBrowser(t, base, "admin")
		b.signInOIDC("/sessions", "carol@example.com")
		auditor := g.token(t, "auditor", "auditors")

		// Sessions: search by text, then open the session the held statements ran in.
		b.WaitJS(`!!document.querySelector('[data-testid="sessions-table"]')`)
		b.Shot("sessions")
		b.Accessible("sessions")
		// Events reach ClickHouse within seconds: wait for the API to find the session.
		require.Eventually(t, func() bool {
			code, body := g.apiGet(t, auditor, "/api/v1/sessions?text="+url.QueryEscape("Ada (console)"))
			return code == http.StatusOK && strings.Contains(string(body), `"id"`)
		}, time.Minute, 100*time.Millisecond)
		b.Run(chromedp.SetValue(chromedp.CSS(`[data-testid="search-text"]`), "Ada (console)"),
			chromedp.Click(chromedp.CSS(`[data-testid="search-submit"]`)))
		b.WaitJS(`location.search.includes("text=Ada") && document.querySelectorAll('[data-testid="session-link"]').length === 1`)
		b.Run(chromedp.Click(chromedp.CSS(`[data-testid="session-link"]`)))
		b.WaitJS(`location.pathname.startsWith("/sessions/") && !!document.querySelector('[data-testid="timeline-statement"]')`)
		b.WaitText(`[data-testid="timeline"]`, "Ada (console)")
		b.WaitText(`[data-testid="timeline"]`, "customer-writes-need-approval")
		b.WaitJS(`document.querySelector('[data-testid="verify-chain"]')?.dataset.status === "verified"`)
		b.Shot("session")
		b.Accessible("session")

		// Evidence: the page's CSV download is the API's CSV, byte for byte.
		b.Open("/evidence", `[data-testid="download-access-csv"]`)
		b.WaitJS(`!!document.querySelector('[data-testid="chart-activity-table"]')`)
		b.Shot("evidence")
		b.Accessible("evidence")
		href := browsertest.Eval[string](b.Browser, `document.querySelector('[data-testid="download-access-csv"]').getAttribute('href')`)
		require.True(t, strings.HasPrefix(href, "/api/v1/evidence/access?"), href)
		code, pageCSV := b.Fetch(http.MethodGet, href, "", nil)
		require.Equal(t, http.StatusOK, code, pageCSV)
		apiCode, apiCSV := g.apiGet(t, auditor, href)
		require.Equal(t, http.StatusOK, apiCode)
		require.Equal(t, string(apiCSV), pageCSV)
		require.Contains(t, pageCSV, "dba-oncall")

		// Grants: ask for one; it waits for an approval.
		b.Open("/grants", `[data-testid="grant-form"]`)
		b.WaitJS(`!!document.querySelector('#grant-roles option[value="dba"]')`) // the config's roles are offered
		b.Run(chromedp.SetValue(chromedp.CSS(`[data-testid="grant-resource"]`), "demo"),
			chromedp.SetValue(chromedp.CSS(`[data-testid="grant-role"]`), "dba"),
			chromedp.SetValue(chromedp.CSS(`[data-testid="grant-reason"]`), "INC-42 console"),
			chromedp.Click(chromedp.CSS(`[data-testid="grant-submit"]`)))
		b.WaitText(`[data-testid="grants-pending"]`, "INC-42 console")
		b.Shot("grants")
		b.Accessible("grants")

		// Resources and policies, and a statement tried against the live policies.
		b.Open("/resources", `[data-testid="policy-test-form"]`)
		b.WaitJS(`!!document.querySelector('[data-testid="policy-test-resource"] option[value="demo"]')`)
		b.Run(chromedp.SetValue(chromedp.CSS(`[data-testid="policy-test-resource"]`), "demo"),
			chromedp.Click(chromedp.CSS(`[data-testid="policy-test-form"] details summary`)),
			chromedp.SetValue(chromedp.CSS(`[data-testid="policy-test-statement"]`), "drop table orders"),
			chromedp.SetValue(chromedp.CSS(`[data-testid="policy-test-subject"]`), "svc-orders"),
			chromedp.SetValue(chromedp.CSS(`[data-testid="policy-test-groups"]`), "orders-readers"),
			chromedp.Click(chromedp.CSS(`[data-testid="policy-test-submit"]`)))
		b.WaitText(`[data-testid="policy-test-effect"]`, "deny")
		// The history of changes: the policies seeded from the config, with who and the diff.
		b.WaitJS(`[...document.querySelectorAll('[data-testid="change-diff"]')].some(d => d.textContent.includes("customer-writes-need-approval"))`)
		b.Shot("resources")
		b.Accessible("resources")

		// Readable on a phone: no page is wider than the screen.
		b.Run(chromedp.EmulateViewport(390, 844))
		for _, p := range []string{"/approvals", "/sessions", "/evidence", "/grants", "/resources"} {
			b.Open(p, `#page-heading`)
			b.WaitJS(`document.readyState === "complete"`)
			require.LessOrEqual(t, browsertest.Eval[int](b.Browser, `document.documentElement.scrollWidth`), 390, "%s is wider than a phone's screen", p)
		}
		b.Shot("phone-resources")
	})

	t.Run("LongSession", func(t *testing.T) {
		// A session of more than 10,000 events stays usable: the page shows its first items
		// and adds more on demand, instead of building every row at once.
		var script strings.Builder
		for i := range 2600 {
			fmt.Fprintf(&script, "select %d as n;\n", i)
		}
		f := filepath.Join(t.TempDir(), "long.sql")
		require.NoError(t, os.WriteFile(f, []byte(script.String()), 0o600))
		cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", fmt.Sprintf("host=%s port=%s dbname=demo user=dba sslmode=disable", g.pgHost, g.pgPort), "-f", f)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+g.token(t, "long-runner", "dba"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		auditor := g.token(t, "auditor", "auditors")
		var id string
		require.Eventually(t, func() bool {
			var list struct {
				Sessions []struct {
					ID     string `json:"id"`
					Events int    `json:"events"`
					End    string `json:"end"`
				} `json:"sessions"`
			}
			if g.cliJSON(t, auditor, &list, "sessions", "list", "--identity", "long-runner") != nil || len(list.Sessions) != 1 {
				return false
			}
			id = list.Sessions[0].ID
			return list.Sessions[0].End != "" && list.Sessions[0].Events > 10000
		}, 2*time.Minute, 500*time.Millisecond)

		b := newBrowser(t, base, "long")
		b.signInOIDC("/sessions", "bob@example.com")
		start := time.Now()
		b.Open("/sessions/"+id, `[data-testid="timeline-item"]`)
		b.WaitJS(`!!document.querySelector('[data-testid="timeline-more"]') && document.querySelector('[data-testid="verify-chain"]')?.dataset.status === "verified"`)
		t.Logf("a session of 10,000+ events: first items and a verified chain shown after %s", time.Since(start).Round(time.Millisecond))
		rows := browsertest.Eval[int](b.Browser, `document.querySelectorAll('[data-testid="timeline-item"]').length`)
		require.LessOrEqual(t, rows, 200, "the page built every row at once")
		b.Run(chromedp.Click(chromedp.CSS(`[data-testid="timeline-more"]`)))
		b.WaitJS(`document.querySelectorAll('[data-testid="timeline-item"]').length > ` + strconv.Itoa(rows))
		b.Accessible("long-session")
	})

	t.Run("CLILoginAndConnect", func(t *testing.T) {
		// gatehouse login with the browser flow: the sign-in page opened in Chromium, as the
		// person would; then gatehouse connect runs the real psql with the cached token.
		cfgDir := t.TempDir()
		env := append(os.Environ(), "GATEHOUSE_CONFIG_DIR="+cfgDir, "GATEHOUSE_TOKEN=")
		login := exec.Command(binary, "login", "--server", base, "--no-browser")
		login.Env = env
		stderr, err := login.StderrPipe()
		require.NoError(t, err)
		var stdout bytes.Buffer
		login.Stdout = &stdout
		require.NoError(t, login.Start())
		authURL := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "http") && strings.Contains(l, "/authorize?") {
					authURL <- l
				}
			}
		}()
		var u string
		select {
		case u = <-authURL:
		case <-time.After(60 * time.Second):
			t.Fatal("gatehouse login printed no sign-in URL")
		}
		require.Contains(t, u, "code_challenge_method=S256")
		b := newBrowser(t, base, "cli-login")
		b.Open(u, `input[name="sub"]`)
		b.Run(chromedp.SetValue(chromedp.CSS(`input[name="sub"]`), "dba-oncall"),
			chromedp.SetValue(chromedp.CSS(`input[name="groups"]`), "dba"),
			chromedp.Click(chromedp.CSS(`button[value="signin"]`)))
		b.WaitText("body", "Signed in")
		require.NoError(t, login.Wait(), stdout.String())
		require.Contains(t, stdout.String(), "as dba-oncall (groups: dba)")
		st, err := os.Stat(filepath.Join(cfgDir, "token.json"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

		connect := exec.Command(binary, "connect", "demo", "--server", base, "--", "-X", "-A", "-t", "-c", "select count(*) > 0 from orders")
		connect.Env = append(env, "PGCONNECT_TIMEOUT=10")
		out, err := connect.CombinedOutput()
		require.NoError(t, err, string(out))
		require.Equal(t, "t", strings.TrimSpace(string(out)))
		// The token never shows on a command line: psql got it from the environment.
		require.NotContains(t, string(out), "eyJ")

		// API commands use the sign-in too.
		list := exec.Command(binary, "approvals", "list", "--json")
		list.Env = append(env, "GATEHOUSE_URL="+base)
		out, err = list.CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), `"approvals"`)
	})

	t.Run("RefusedSignIns", func(t *testing.T) {
		b := newBrowser(t, base, "refused")
		// A callback with a state this console never issued (a forged answer).
		b.Open("/auth/oidc/callback?code=abc&state="+url.QueryEscape("not-a-state"), `.auth-card`)
		require.Contains(t, b.Text(`.auth-card`), "wrong or replayed state")
		b.Shot("refused-state")
		b.Accessible("refused-state")

		// A sign-in started elsewhere (an attacker's own, to sign the victim in as the
		// attacker): its answer, opened in this browser, is refused.
		cb := oidcCallbackURL(t, base, nil)
		b.Open(strings.TrimPrefix(cb, base), `.auth-card`)
		require.Contains(t, b.Text(`.auth-card`), "started in another browser")

		// An answer used twice: the second is refused, even in the browser that began it.
		jar, _ := cookiejar.New(nil)
		cb = oidcCallbackURL(t, base, jar)
		hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get(cb)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, err = hc.Get(cb)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, string(body), "wrong or replayed state")

		// An altered session cookie, and one whose session was ended: both are sent to
		// sign in again, with a clear notice; neither reaches the API.
		b.signInOIDC("/sessions", "alice@example.com")
		// Off the app first (to the server-rendered sign-in page): the app, finding its
		// session gone, would navigate to sign in by itself and race the test's navigation.
		b.Open("/auth/login", `.auth-card`)
		ck := b.sessionCookie()
		b.SetCookie(b.Base+"/", ck.Name, flipChar(ck.Value))
		code, _ := b.me()
		require.Equal(t, http.StatusUnauthorized, code)
		b.Open("/approvals", `.auth-card`)
		require.Contains(t, b.Location(), "/auth/login")
		require.Contains(t, b.Text(`.auth-card`), "session has ended")
		b.Shot("session-ended")
	})
}

// oidcCallbackURL starts a console sign-in with an HTTP client (with jar, its cookies),
// signs in at the development issuer as alice, and returns the callback URL the issuer
// sends the browser to, without following it.
func oidcCallbackURL(t *testing.T, base string, jar http.CookieJar) string {
	t.Helper()
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(base + "/auth/oidc/login?next=/sessions")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	authz, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	// The issuer's sign-in page carries the pending request's id in its form.
	resp, err = hc.Get(authz.String())
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	require.NotNil(t, m, "no pending request in the issuer's page:\n%s", page)
	form := url.Values{"request": {html.UnescapeString(string(m[1]))}, "pick": {"alice@example.com"}}
	resp, err = hc.PostForm(authz.Scheme+"://"+authz.Host+authz.Path, form)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	cb := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(cb, base+"/auth/oidc/callback?"), cb)
	return cb
}

func flipChar(s string) string {
	b := []byte(s)
	if b[2] == 'A' {
		b[2] = 'B'
	} else {
		b[2] = 'A'
	}
	return string(b)
}

// sessionCookie is the browser's console session cookie.
func (b *browser) sessionCookie() *network.Cookie {
	b.T.Helper()
	for _, c := range b.Cookies(b.Base + "/") {
		if strings.HasSuffix(c.Name, "gh_session") {
			require.True(b.T, c.HTTPOnly)
			return c
		}
	}
	b.T.Fatal("no session cookie")
	return nil
}

// psqlResult is how a psql run ended.
type psqlResult struct {
	stdout, stderr string
	err            error
}

// psqlAsync runs sql through the proxy with psql in the background.
func (g *gateway) psqlAsync(t *testing.T, token, user, sql string) <-chan psqlResult {
	t.Helper()
	done := make(chan psqlResult, 1)
	go func() {
		out, errOut, err := g.psql(t, token, user, sql)
		done <- psqlResult{out, errOut, err}
	}()
	return done
}

// approvalFor waits for the approvals page to show the approval of stmt, and returns its
// id.
func (b *browser) approvalFor(stmt string) string {
	b.T.Helper()
	find := `[...document.querySelectorAll('[data-testid="approval"]')].find(e => e.querySelector('[data-testid="approval-statement"]')?.textContent === ` + browsertest.JSString(stmt) + `)`
	b.WaitJS(`!!` + find)
	return browsertest.Eval[string](b.Browser, find+`.dataset.approvalId`)
}

// approval reads an approval through the API as an auditor.
func (g *gateway) approval(t *testing.T, id string) approvals.Approval {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.approvalsAPI+"/api/v1/approvals/"+id, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+g.token(t, "auditor", "auditors"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var a approvals.Approval
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return a
}

// cliMain runs the CLI and returns its exit code.
func cliMain(t *testing.T, args ...string) int {
	var out, errOut bytes.Buffer
	code := cli.Main(args, &out, &errOut)
	if code != 0 {
		t.Logf("gatehouse %s: %s", strings.Join(args, " "), errOut.String())
	}
	return code
}
