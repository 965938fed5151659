package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// browser is a headless Chromium (Debian's) driven with chromedp: one profile, so one set
// of cookies, like one person's browser.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	name  string
}

// chromiumPath is Debian's Chromium (deploy/install-deps.sh test installs it).
func chromiumPath(t *testing.T) string {
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

// screenshotDir is where the console tests leave a screenshot of each page:
// $GATEHOUSE_SCREENSHOTS, or gatehouse-screenshots in the system's temp dir.
func screenshotDir(t *testing.T) string {
	d := os.Getenv("GATEHOUSE_SCREENSHOTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "gatehouse-screenshots")
	}
	require.NoError(t, os.MkdirAll(d, 0o755))
	return d
}

// newBrowser starts a browser for base (the console's URL), named for its screenshots.
func newBrowser(t *testing.T, base, name string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)), chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("lang", "en-US"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base, shots: screenshotDir(t), name: name}
	// The first run starts the browser, and must not carry a timeout (it would stop it).
	require.NoError(t, chromedp.Do(ctx))
	return b
}

// run runs steps with a bound, failing the test on error.
func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser %s: %v (at %s)", b.name, err, b.location())
	}
}

// get runs an action that returns a value.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser %s: %v (at %s)", b.name, err, b.location())
	}
	return v
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(ctx, chromedp.Location())
	return u
}

// open navigates to path on the console and waits for sel.
func (b *browser) open(path, sel string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// text is sel's text content.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

// eval evaluates a JavaScript expression (a promise is awaited).
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return get(b, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitJS waits until the JavaScript expression is true, across navigations (an
// evaluation that meets a page being replaced is tried again).
func (b *browser) waitJS(expr string) {
	b.t.Helper()
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
	b.t.Fatalf("browser %s: %s never became true (last error %v) at %s", b.name, expr, last, b.location())
}

// waitText waits until sel's text contains want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	b.waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q) })()`, sel, want))
}

// shot saves a full-page screenshot as <name>-<page>.png (quality 100 is PNG).
func (b *browser) shot(page string) {
	b.t.Helper()
	png := get(b, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, b.name+"-"+page+".png")
	require.NoError(b.t, os.WriteFile(p, png, 0o644))
	b.t.Logf("screenshot %s", p)
}

// axeSource is axe-core, vendored by make console-assets.
func axeSource(t *testing.T) string {
	b, err := os.ReadFile("../query/console/testdata/axe.min.js")
	require.NoError(t, err, "axe-core is vendored at query/console/testdata/axe.min.js (make console-assets)")
	return string(b)
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

// accessible runs axe-core on the page shown and fails on a serious or critical violation.
func (b *browser) accessible(page string) {
	b.t.Helper()
	if !eval[bool](b, `typeof axe !== 'undefined'`) {
		get(b, chromedp.Evaluate[json.RawMessage](axeSource(b.t)+";true"))
	}
	var res struct {
		Violations []axeViolation `json:"violations"`
	}
	raw := eval[json.RawMessage](b, `axe.run(document, {resultTypes: ['violations']}).then(r => ({violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => ({target: n.target, html: n.html}))}))}))`)
	require.NoError(b.t, json.Unmarshal(raw, &res))
	var bad []string
	for _, v := range res.Violations {
		line := fmt.Sprintf("%s (%s): %s", v.ID, v.Impact, v.Help)
		for _, n := range v.Nodes {
			line += fmt.Sprintf("\n    %v %s", n.Target, n.HTML)
		}
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, line)
		} else {
			b.t.Logf("axe on %s (not serious): %s", page, line)
		}
	}
	require.Empty(b.t, bad, "axe-core on the %s page:\n%s", page, strings.Join(bad, "\n"))
}
