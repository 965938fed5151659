package identity

// The development issuer's authorization code flow (RFC 6749 4.1) with PKCE (RFC 7636,
// S256 only): GET /authorize shows a sign-in page where the developer picks who to be,
// POST /authorize takes the choice and redirects to the client with a code, which the
// token endpoint exchanges (authcode_token.go). Redirects go to loopback clients
// (http://127.0.0.1:PORT/..., http://localhost:PORT/...) and to the issuer's own host (the
// console's callback) only: this is a development issuer, not an authorization server for
// arbitrary clients. Every endpoint answers loopback callers only.

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

const (
	// authorizeTTL is how long a sign-in page may wait for the developer's choice.
	authorizeTTL = 10 * time.Minute
	// codeTTL is an authorization code's lifetime (RFC 6749 4.1.2: short).
	codeTTL = 60 * time.Second
	// refreshTTL is a refresh token's lifetime; each use replaces it.
	refreshTTL = 12 * time.Hour
	// maxPending, maxCodes and maxRefresh bound the in-memory state, so that a loop
	// opening pages or signing in cannot grow the issuer's memory.
	maxPending = 1000
	maxCodes   = 1000
	maxRefresh = 10000
)

// person is who a sign-in signs in: the subject, the readable name (the subject when
// empty; the email too when it looks like one), groups, and the access token's lifetime.
type person struct {
	Subject string
	Name    string
	Groups  []string
	TTL     time.Duration
}

// name is the person's readable name.
func (p person) name() string {
	if p.Name != "" {
		return p.Name
	}
	return p.Subject
}

// demoPeople are the quick picks of the sign-in page.
var demoPeople = []struct {
	Subject string
	Groups  string
}{
	{"alice@example.com", "approvers"},
	{"bob@example.com", "auditors"},
	{"carol@example.com", "gatehouse-admins, auditors, approvers"},
	{"dave@example.com", "engineers"},
}

// authRequest is a pending authorization request: the page is shown, the choice not made.
type authRequest struct {
	// id is put in the page's form only and required by its POST: a page of another
	// origin cannot read it, so it cannot sign someone in on the developer's behalf.
	id                                                string
	clientID, redirectURI, scope, state, nonce, chall string
	expires                                           time.Time
}

// authCode is an issued, not yet exchanged, authorization code.
type authCode struct {
	clientID, redirectURI, scope, nonce, chall string
	who                                        person
	expires                                    time.Time
}

// refreshGrant is what a refresh token stands for.
type refreshGrant struct {
	clientID, scope string
	who             person
	expires         time.Time
}

// authState is the flow's bounded in-memory state.
type authState struct {
	mu      sync.Mutex
	pending map[string]*authRequest
	codes   map[string]*authCode
	// used maps an exchanged code to the refresh token it gave, until the code would have
	// expired: a replayed code revokes it (RFC 6749 10.5).
	used    map[string]usedCode
	refresh map[string]*refreshGrant
	now     func() time.Time
}

type usedCode struct {
	refresh string
	expires time.Time
}

func newAuthState() authState {
	return authState{pending: map[string]*authRequest{}, codes: map[string]*authCode{}, used: map[string]usedCode{},
		refresh: map[string]*refreshGrant{}, now: time.Now}
}

// sweep drops what expired (with the lock held).
func (s *authState) sweep(now time.Time) {
	for k, a := range s.pending {
		if now.After(a.expires) {
			delete(s.pending, k)
		}
	}
	for k, c := range s.codes {
		if now.After(c.expires) {
			delete(s.codes, k)
		}
	}
	for k, u := range s.used {
		if now.After(u.expires) {
			delete(s.used, k)
		}
	}
	for k, r := range s.refresh {
		if now.After(r.expires) {
			delete(s.refresh, k)
		}
	}
}

// validRedirect says whether the issuer may send a browser to u: an http URL on a
// loopback host (any port, RFC 8252 7.3), or an http(s) URL on the issuer's own host.
func (d *DevIssuer) validRedirect(u string) error {
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() || p.Opaque != "" {
		return fmt.Errorf("redirect_uri %q is not an absolute URL", u)
	}
	if p.User != nil || p.Fragment != "" || strings.Contains(u, "#") {
		return fmt.Errorf("redirect_uri %q has user info or a fragment", u)
	}
	host := p.Hostname()
	if ip := net.ParseIP(host); p.Scheme == "http" && (host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return nil
	}
	if iss, err := url.Parse(d.issuer); err == nil && (p.Scheme == "http" || p.Scheme == "https") &&
		strings.EqualFold(host, iss.Hostname()) && host != "" {
		return nil
	}
	return fmt.Errorf("redirect_uri %q is neither a loopback http URL (http://127.0.0.1:PORT/..., http://localhost:PORT/...) nor on the issuer's host: this development issuer redirects nowhere else", u)
}

// redirectError sends the browser back to the client with an RFC 6749 4.1.2.1 error.
func redirectError(c echo.Context, redirectURI, state, code, desc string) error {
	q := url.Values{"error": {code}, "error_description": {desc}}
	if state != "" {
		q.Set("state", state)
	}
	return c.Redirect(http.StatusFound, withQuery(redirectURI, q))
}

func withQuery(u string, q url.Values) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + q.Encode()
}

// validChallenge: a S256 challenge is the base64url of 32 bytes, 43 characters.
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// authorize is GET /authorize: check the request, then show the sign-in page.
func (d *DevIssuer) authorize(c echo.Context) error {
	q := c.QueryParams()
	clientID, redirectURI, state := q.Get("client_id"), q.Get("redirect_uri"), q.Get("state")
	// Without a client or a redirect the issuer may trust, the error is shown here, never
	// redirected (RFC 6749 4.1.2.1).
	if clientID == "" {
		return d.renderSignIn(c, http.StatusBadRequest, signInPage{Message: "The sign-in request has no client_id."})
	}
	if redirectURI == "" {
		return d.renderSignIn(c, http.StatusBadRequest, signInPage{Message: "The sign-in request has no redirect_uri."})
	}
	if err := d.validRedirect(redirectURI); err != nil {
		return d.renderSignIn(c, http.StatusBadRequest, signInPage{Message: err.Error() + "."})
	}
	switch {
	case q.Get("response_type") != "code":
		return redirectError(c, redirectURI, state, "unsupported_response_type", "this issuer supports response_type=code only")
	case q.Get("code_challenge") == "":
		return redirectError(c, redirectURI, state, "invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256")
	case q.Get("code_challenge_method") != "S256":
		return redirectError(c, redirectURI, state, "invalid_request", "code_challenge_method must be S256 (plain is refused)")
	case !validChallenge(q.Get("code_challenge")):
		return redirectError(c, redirectURI, state, "invalid_request", "code_challenge is not the base64url of a SHA-256 (43 characters)")
	}
	s := &d.auth
	s.mu.Lock()
	now := s.now()
	s.sweep(now)
	if len(s.pending) >= maxPending {
		s.mu.Unlock()
		return redirectError(c, redirectURI, state, "temporarily_unavailable", "too many sign-ins are waiting; try again later")
	}
	a := &authRequest{id: randomString(18), clientID: clientID, redirectURI: redirectURI, scope: q.Get("scope"), state: state,
		nonce: q.Get("nonce"), chall: q.Get("code_challenge"), expires: now.Add(authorizeTTL)}
	s.pending[a.id] = a
	s.mu.Unlock()
	return d.renderSignIn(c, http.StatusOK, d.formPage(a, "alice@example.com", "approvers", "1h", ""))
}

func (d *DevIssuer) formPage(a *authRequest, sub, groups, ttl, msg string) signInPage {
	p := signInPage{Request: a.id, ClientID: a.clientID, RedirectURI: a.redirectURI, Subject: sub, Groups: groups, TTL: ttl,
		Message: msg, redirectOrigin: origin(a.redirectURI)}
	for _, dp := range demoPeople {
		p.People = append(p.People, signInPerson{Subject: dp.Subject, Groups: dp.Groups})
	}
	return p
}

// origin is scheme://host of an absolute URL, for the page's form-action.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// authorizeDecide is POST /authorize: the developer's choice on the sign-in page.
func (d *DevIssuer) authorizeDecide(c echo.Context) error {
	// A browser sends Origin with a POST: a form of another origin is refused outright.
	if o := c.Request().Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != c.Request().Host {
			return d.renderSignIn(c, http.StatusForbidden, signInPage{Message: "The sign-in form is accepted from this page only."})
		}
	}
	s := &d.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a := s.pending[c.FormValue("request")]
	if a == nil || now.After(a.expires) {
		return d.renderSignIn(c, http.StatusBadRequest, signInPage{Message: "No sign-in is waiting for this form (it expired or was used): start the sign-in again from your application."})
	}
	if c.FormValue("action") == "cancel" {
		delete(s.pending, a.id)
		return redirectError(c, a.redirectURI, a.state, "access_denied", "the sign-in was cancelled on the development issuer's page")
	}
	sub, groups, ttlText := strings.TrimSpace(c.FormValue("sub")), c.FormValue("groups"), strings.TrimSpace(c.FormValue("ttl"))
	if pick := c.FormValue("pick"); pick != "" {
		sub, groups = "", ""
		for _, dp := range demoPeople {
			if dp.Subject == pick {
				sub, groups = dp.Subject, dp.Groups
			}
		}
	}
	ttl := time.Hour
	if ttlText != "" {
		v, err := time.ParseDuration(ttlText)
		if err != nil || v <= 0 || v > MaxDevTokenTTL {
			return d.renderSignIn(c, http.StatusBadRequest, d.formPage(a, sub, groups, ttlText,
				fmt.Sprintf("Token lifetime %q is not a duration between 1s and %s (e.g. 1h, 30m).", ttlText, MaxDevTokenTTL)))
		}
		ttl = v
	}
	if sub == "" {
		return d.renderSignIn(c, http.StatusBadRequest, d.formPage(a, sub, groups, ttlText, "Type who to sign in as, or pick a demo person."))
	}
	if len(s.codes) >= maxCodes {
		s.sweep(now)
		if len(s.codes) >= maxCodes {
			return redirectError(c, a.redirectURI, a.state, "temporarily_unavailable", "too many sign-in codes are waiting to be exchanged; try again later")
		}
	}
	delete(s.pending, a.id)
	code := randomString(32)
	who := person{Subject: sub, Groups: splitGroups(groups), TTL: ttl}
	s.codes[code] = &authCode{clientID: a.clientID, redirectURI: a.redirectURI, scope: a.scope, nonce: a.nonce, chall: a.chall,
		who: who, expires: now.Add(codeTTL)}
	d.log.Info("authorization code issued", "client_id", a.clientID, "sub", sub, "groups", who.Groups, "redirect_uri", a.redirectURI)
	q := url.Values{"code": {code}}
	if a.state != "" {
		q.Set("state", a.state)
	}
	return c.Redirect(http.StatusFound, withQuery(a.redirectURI, q))
}

func splitGroups(s string) []string {
	var out []string
	for _, g := range strings.Split(s, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// signInCSS is the pages' style sheet, served from the issuer so that the pages' CSP
// needs no inline style.
const signInCSS = `body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}
label{display:block;margin:.6em 0}input{width:100%;box-sizing:border-box}
.people button{margin:.2em .3em .2em 0}.warn{background:#fff4d6;padding:.5em}.muted{color:#555;font-size:.9em}
`

var signInTmpl = template.Must(template.New("signin").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Gatehouse development sign-in</title>
<link rel="stylesheet" href="{{.CSS}}"></head>
<body><h1>Gatehouse development sign-in</h1>
<p class="warn"><strong>Development only:</strong> this issuer signs in whoever you choose, for loopback clients only.</p>
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Request}}<p class="muted">Signing in to <strong>{{.ClientID}}</strong>, which will receive the sign-in at {{.RedirectURI}}.</p>
<!-- Sign in comes first: it is the button Enter presses. -->
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<label>Subject and name <input name="sub" value="{{.Subject}}"></label>
<label>Groups, comma-separated <input name="groups" value="{{.Groups}}"></label>
<label>Token lifetime <input name="ttl" value="{{.TTL}}"></label>
<button name="action" value="signin">Sign in</button>
<p class="people">Or sign in as a demo person:<br>
{{range .People}}<button name="pick" value="{{.Subject}}" title="groups: {{.Groups}}">{{.Subject}}</button>
{{end}}</p>
<p><button name="action" value="cancel">Cancel</button></p>
</form>{{end}}
</body></html>
`))

type signInPerson struct{ Subject, Groups string }

type signInPage struct {
	CSS, Action, Request, ClientID, RedirectURI, Subject, Groups, TTL, Message string
	People                                                                     []signInPerson
	// redirectOrigin is allowed as a form-action: browsers apply form-action to the
	// redirect that follows the form's POST.
	redirectOrigin string
}

// pageHeaders are the headers of the issuer's HTML pages: no script, no inline style, no
// framing (no clickjacking of a sign-in button), forms only to here (and formAction).
func pageHeaders(c echo.Context, formAction string) {
	h := c.Response().Header()
	fa := "'self'"
	if formAction != "" {
		fa += " " + formAction
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (d *DevIssuer) renderSignIn(c echo.Context, status int, p signInPage) error {
	pageHeaders(c, p.redirectOrigin)
	p.CSS, p.Action = DevIssuerPath+"/signin.css", d.issuer+"/authorize"
	var b strings.Builder
	if err := signInTmpl.Execute(&b, p); err != nil {
		return err
	}
	return c.HTML(status, b.String())
}

// signInStyle serves the pages' style sheet.
func signInStyle(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "max-age=3600")
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", []byte(signInCSS))
}
