// Package browsertest drives Debian's headless Chromium from tests with chromedp: pages,
// requests made from a page, cookies, screenshots, and accessibility checks with axe-core.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// Browser is one headless Chromium with its own profile, so one set of cookies: one
// person's browser.
type Browser struct {
	T *testing.T
	// Base is the URL paths are relative to.
	Base  string
	ctx   context.Context
	shots string
	name  string
}

// ChromiumPath is Debian's Chromium (deploy/install-deps.sh test installs it); the test
// fails when it is missing.
func ChromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("Chromium is not installed: deploy/install-deps.sh test (apt-get install chromium)")
	return ""
}

// ScreenshotDir is where tests leave their screenshots: $GATEHOUSE_SCREENSHOTS, or
// gatehouse-screenshots in the system's temp dir.
func ScreenshotDir(t *testing.T) string {
	d := os.Getenv("GATEHOUSE_SCREENSHOTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "gatehouse-screenshots")
	}
	require.NoError(t, os.MkdirAll(d, 0o755))
	return d
}

// New starts a browser for base, named name in its screenshots' file names; it stops
// when the test ends.
func New(t *testing.T, base, name string) *Browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(ChromiumPath(t)), chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("lang", "en-US"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, and must not carry a timeout (it would stop it).
	require.NoError(t, chromedp.Do(ctx))
	return &Browser{T: t, Base: base, ctx: ctx, shots: ScreenshotDir(t), name: name}
}

// Run runs steps with a bound, failing the test on error.
func (b *Browser) Run(steps ...chromedp.Action[chromedp.Void]) {
	b.T.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.T.Fatalf("browser %s: %v (at %s)", b.name, err, b.Location())
	}
}

// Get runs an action that returns a value, failing the test on error. An action that met
// a page being replaced (the page navigated by itself) is run again on the new page.
func Get[T any](b *Browser, a chromedp.Action[T]) T {
	b.T.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	for {
		v, err := chromedp.Run(ctx, a)
		if err == nil {
			return v
		}
		if !pageReplaced(err) || ctx.Err() != nil {
			b.T.Fatalf("browser %s: %v (at %s)", b.name, err, b.Location())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pageReplaced reports whether err says the page an evaluation ran in went away.
func pageReplaced(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Execution context was destroyed") || strings.Contains(s, "Cannot find context with specified id") ||
		strings.Contains(s, "Inspected target navigated or closed")
}

// Eval evaluates a JavaScript expression in the page (a promise is awaited).
func Eval[T any](b *Browser, expr string) T {
	b.T.Helper()
	return Get(b, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// Location is the page's URL.
func (b *Browser) Location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(ctx, chromedp.Location())
	return u
}

// Open navigates to path (relative to Base, or an absolute URL) and waits for sel.
func (b *Browser) Open(path, sel string) {
	b.T.Helper()
	u := path
	if !strings.Contains(path, "://") {
		u = b.Base + path
	}
	b.Run(chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// Text is the visible text of sel.
func (b *Browser) Text(sel string) string {
	b.T.Helper()
	return Get(b, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

// WaitJS waits until the JavaScript expression is true, across navigations (an
// evaluation that meets a page being replaced is tried again).
func (b *Browser) WaitJS(expr string) {
	b.T.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	b.Shot("failed")
	b.T.Fatalf("browser %s: %s never became true (last error %v) at %s; the page says:\n%s", b.name, expr, last, b.Location(), b.pageText())
}

// pageText is the start of the page's text, for a failure's message.
func (b *Browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`))
	return s
}

// WaitText waits until sel's text contains want.
func (b *Browser) WaitText(sel, want string) {
	b.T.Helper()
	b.WaitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s) })()`, JSString(sel), JSString(want)))
}

// JSString is s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Fetch makes a request from the page (same origin, with its cookies) and returns the
// status and the body.
func (b *Browser) Fetch(method, path, body string, headers map[string]string) (int, string) {
	b.T.Helper()
	if headers == nil {
		headers = map[string]string{}
	}
	h, _ := json.Marshal(headers)
	bodyJS := "undefined"
	if method != "GET" && method != "HEAD" {
		bodyJS = JSString(body)
	}
	var r struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	raw := Eval[json.RawMessage](b, `fetch(`+JSString(path)+`, {method: `+JSString(method)+`, headers: `+string(h)+`, body: `+bodyJS+`})`+
		`.then(async r => ({status: r.status, body: await r.text()}))`)
	require.NoError(b.T, json.Unmarshal(raw, &r))
	return r.Status, r.Body
}

// Shot saves a full-page screenshot as <name>-<page>.png (quality 100 is PNG).
func (b *Browser) Shot(page string) {
	b.T.Helper()
	png := Get(b, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, b.name+"-"+page+".png")
	require.NoError(b.T, os.WriteFile(p, png, 0o644))
	b.T.Logf("screenshot %s", p)
}

// Cookies are the browser's cookies for u.
func (b *Browser) Cookies(u string) []*network.Cookie {
	b.T.Helper()
	return Get(b, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
		return r.Cookies, err
	})
}

// SetCookie sets an HttpOnly cookie for u.
func (b *Browser) SetCookie(u, name, value string) {
	b.T.Helper()
	httpOnly := true
	Get(b, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: name, Value: value, URL: u, Path: "/", HTTPOnly: &httpOnly})
	})
}

// axeFile is axe-core, vendored by make console-assets.
func axeFile() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "..", "query", "console", "testdata", "axe.min.js")
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// Accessible runs axe-core on the page shown and fails the test on a serious or critical
// violation (lesser ones are logged).
func (b *Browser) Accessible(page string) {
	b.T.Helper()
	if !Eval[bool](b, `typeof axe !== 'undefined'`) {
		src, err := os.ReadFile(axeFile())
		require.NoError(b.T, err, "axe-core is vendored at query/console/testdata/axe.min.js (make console-assets)")
		Get(b, chromedp.Evaluate[json.RawMessage](string(src)+";true"))
	}
	var res struct {
		Violations []axeViolation `json:"violations"`
	}
	raw := Eval[json.RawMessage](b, `axe.run(document, {resultTypes: ['violations']}).then(r => ({violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => ({target: n.target, html: n.html}))}))}))`)
	require.NoError(b.T, json.Unmarshal(raw, &res))
	var bad []string
	for _, v := range res.Violations {
		line := fmt.Sprintf("%s (%s): %s", v.ID, v.Impact, v.Help)
		for _, n := range v.Nodes {
			line += fmt.Sprintf("\n    %v %s", n.Target, n.HTML)
		}
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, line)
		} else {
			b.T.Logf("axe on %s (not serious): %s", page, line)
		}
	}
	require.Empty(b.T, bad, "axe-core on the %s page:\n%s", page, strings.Join(bad, "\n"))
}
