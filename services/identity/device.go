package identity

// The development issuer's OAuth 2.0 Device Authorization Grant (RFC 8628), so that
// `gatehouse ssh login` against `gatehouse dev` signs a person in the way it does at a real
// IdP: the CLI asks for a code (POST /device/code), the person opens the verification page
// (GET /device?user_code=...), types who they are and approves (POST /device), and the
// CLI, polling the token endpoint meanwhile, receives a token for that identity. Every
// endpoint answers loopback callers only, as the token endpoint does.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// DeviceGrantType is the token endpoint's grant_type for a device code (RFC 8628 3.4).
const DeviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

const (
	// deviceCodeTTL is how long a person has to approve a code.
	deviceCodeTTL = 10 * time.Minute
	// deviceInterval is the polling interval the issuer asks for: short, as the issuer is
	// on the same machine.
	deviceInterval = time.Second
	// slowDownStep is what a too-early poll adds to the interval (RFC 8628 3.5).
	slowDownStep = 5 * time.Second
	// maxDevices bounds the pending authorizations, so that a loop asking for codes cannot
	// grow the issuer's memory.
	maxDevices = 1000
	// userCodeAlphabet has no vowels (no words) and no look-alike characters (RFC 8628 6.1).
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
)

// deviceAuth is one pending device authorization.
type deviceAuth struct {
	deviceCode string
	userCode   string // normalised: userCodeLen letters, no dash
	clientID   string
	scope      string
	// formToken is put in the approval page only, and required by its POST: a page of
	// another origin cannot read it, so it cannot approve a code on the person's behalf.
	formToken string
	expires   time.Time
	interval  time.Duration
	lastPoll  time.Time
	// token and who are set when the person approved, denied when they refused.
	token  string
	who    person
	denied bool
}

// devices are the pending device authorizations, by device code and by user code.
type devices struct {
	mu       sync.Mutex
	byDevice map[string]*deviceAuth
	byUser   map[string]*deviceAuth
	max      int
	now      func() time.Time
}

func newDevices() devices {
	return devices{byDevice: map[string]*deviceAuth{}, byUser: map[string]*deviceAuth{}, max: maxDevices, now: time.Now}
}

// oauthError is an RFC 6749 5.2 error answer, what OAuth clients parse.
func oauthError(c echo.Context, status int, code, desc string) error {
	return c.JSON(status, map[string]string{"error": code, "error_description": desc})
}

// sweep drops what expired (with the lock held); an expired code is kept for one more
// lifetime, so that a late poll hears expired_token rather than invalid_grant, unless room
// is needed.
func (ds *devices) sweep(now time.Time, needRoom bool) {
	for k, a := range ds.byDevice {
		if now.After(a.expires.Add(deviceCodeTTL)) || (needRoom && now.After(a.expires)) {
			delete(ds.byDevice, k)
			delete(ds.byUser, a.userCode)
		}
	}
}

func (ds *devices) remove(a *deviceAuth) {
	delete(ds.byDevice, a.deviceCode)
	delete(ds.byUser, a.userCode)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newUserCode() string {
	var out []byte
	var b [1]byte
	for len(out) < userCodeLen {
		_, _ = rand.Read(b[:])
		// Rejection sampling keeps the letters uniform: 240 is the largest multiple of 20.
		if b[0] < 240 {
			out = append(out, userCodeAlphabet[int(b[0])%len(userCodeAlphabet)])
		}
	}
	return string(out)
}

// formatUserCode shows a user code as people type it: XXXX-XXXX.
func formatUserCode(s string) string { return s[:4] + "-" + s[4:] }

// normaliseUserCode reads a user code as typed: any case, with or without the dash or
// spaces. It returns "" for what cannot be one.
func normaliseUserCode(s string) string {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != userCodeLen {
		return ""
	}
	for _, r := range s {
		if !strings.ContainsRune(userCodeAlphabet, r) {
			return ""
		}
	}
	return s
}

// deviceCode is the device authorization endpoint (RFC 8628 3.1, 3.2).
func (d *DevIssuer) deviceCode(c echo.Context) error {
	clientID := c.FormValue("client_id")
	if clientID == "" {
		return oauthError(c, http.StatusBadRequest, "invalid_request", "client_id is required")
	}
	ds := &d.devices
	ds.mu.Lock()
	now := ds.now()
	ds.sweep(now, len(ds.byDevice) >= ds.max)
	if len(ds.byDevice) >= ds.max {
		ds.mu.Unlock()
		return oauthError(c, http.StatusServiceUnavailable, "temporarily_unavailable",
			fmt.Sprintf("%d sign-ins are already waiting for approval; try again when some have expired", ds.max))
	}
	a := &deviceAuth{deviceCode: randomString(32), clientID: clientID, scope: c.FormValue("scope"), formToken: randomString(18),
		expires: now.Add(deviceCodeTTL), interval: deviceInterval}
	for a.userCode == "" || ds.byUser[a.userCode] != nil {
		a.userCode = newUserCode()
	}
	ds.byDevice[a.deviceCode], ds.byUser[a.userCode] = a, a
	ds.mu.Unlock()
	d.log.Info("device code issued", "client_id", clientID, "expires", a.expires)
	verify := d.issuer + "/device"
	return c.JSON(http.StatusOK, map[string]any{
		"device_code":               a.deviceCode,
		"user_code":                 formatUserCode(a.userCode),
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + url.QueryEscape(formatUserCode(a.userCode)),
		"expires_in":                int(deviceCodeTTL.Seconds()),
		"interval":                  int(deviceInterval.Seconds()),
	})
}

// deviceToken answers the token endpoint's device_code grant (RFC 8628 3.4, 3.5).
func (d *DevIssuer) deviceToken(c echo.Context) error {
	ds := &d.devices
	ds.mu.Lock()
	defer ds.mu.Unlock()
	now := ds.now()
	a := ds.byDevice[c.FormValue("device_code")]
	if a == nil || (c.FormValue("client_id") != "" && c.FormValue("client_id") != a.clientID) {
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "unknown device_code (or one issued to another client)")
	}
	switch {
	case now.After(a.expires):
		ds.remove(a)
		return oauthError(c, http.StatusBadRequest, "expired_token", "the device code expired before it was approved: start the sign-in again")
	case a.denied:
		ds.remove(a)
		return oauthError(c, http.StatusBadRequest, "access_denied", "the sign-in was denied on the verification page")
	case !a.lastPoll.IsZero() && now.Sub(a.lastPoll) < a.interval:
		a.interval += slowDownStep
		a.lastPoll = now
		return oauthError(c, http.StatusBadRequest, "slow_down", fmt.Sprintf("polled too often: wait %s between polls", a.interval))
	}
	a.lastPoll = now
	if a.token == "" {
		return oauthError(c, http.StatusBadRequest, "authorization_pending", "waiting for the person to approve the sign-in at the verification page")
	}
	ds.remove(a) // a device code gives one set of tokens
	_, err := d.answerTokens(c, a.clientID, a.scope, "", a.who)
	return err
}

// pending returns the authorization waiting for a decision under a user code, if any.
func (ds *devices) pending(userCode string) *deviceAuth {
	a := ds.byUser[normaliseUserCode(userCode)]
	if a == nil || ds.now().After(a.expires) || a.denied || a.token != "" {
		return nil
	}
	return a
}

var devicePageTmpl = template.Must(template.New("device").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Gatehouse development sign-in</title>
<link rel="stylesheet" href="{{.CSS}}"></head>
<body><h1>Gatehouse development sign-in</h1>
<p><strong>Development only:</strong> this issuer signs in whoever you type, for loopback clients only.</p>
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .UserCode}}<form method="post" action="{{.Action}}">
<p>Code <strong>{{.UserCode}}</strong> (check that your terminal shows the same).</p>
<input type="hidden" name="user_code" value="{{.UserCode}}"><input type="hidden" name="form_token" value="{{.FormToken}}">
<label>Subject (sub) <input name="sub" required value="{{.Subject}}"></label>
<label>Name (preferred_username) <input name="name"></label>
<label>Groups, comma-separated <input name="groups"></label>
<label>Token lifetime <input name="ttl" value="1h"></label>
<button name="action" value="approve">Approve</button> <button name="action" value="deny">Deny</button>
</form>{{else if .Ask}}<form method="get" action="{{.Action}}"><label>Code shown in your terminal <input name="user_code" autofocus></label><button>Continue</button></form>{{end}}
</body></html>
`))

type devicePage struct {
	CSS, Action, UserCode, FormToken, Subject, Message string
	Ask                                                bool
}

func (d *DevIssuer) renderDevice(c echo.Context, status int, p devicePage) error {
	// No script, no framing (no clickjacking of the Approve button), forms only to here.
	pageHeaders(c, "")
	p.CSS, p.Action = DevIssuerPath+"/signin.css", d.issuer+"/device"
	var b strings.Builder
	if err := devicePageTmpl.Execute(&b, p); err != nil {
		return err
	}
	return c.HTML(status, b.String())
}

// devicePage is the verification page: the approval form of a pending code, or a form
// asking for the code.
func (d *DevIssuer) devicePage(c echo.Context) error {
	code := c.QueryParam("user_code")
	d.devices.mu.Lock()
	a := d.devices.pending(code)
	var p devicePage
	if a != nil {
		p = devicePage{UserCode: formatUserCode(a.userCode), FormToken: a.formToken}
	}
	d.devices.mu.Unlock()
	if a == nil {
		p.Ask = true
		if code != "" {
			p.Message = "No sign-in is waiting for that code (it may have expired or been used): check the code, or start again."
			return d.renderDevice(c, http.StatusNotFound, p)
		}
	}
	return d.renderDevice(c, http.StatusOK, p)
}

// deviceDecide takes the approval form: approve with an identity, or deny.
func (d *DevIssuer) deviceDecide(c echo.Context) error {
	// A browser sends Origin with a POST: a form of another origin is refused outright.
	if o := c.Request().Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != c.Request().Host {
			return echo.NewHTTPError(http.StatusForbidden, "the approval form is accepted from this page only")
		}
	}
	ds := &d.devices
	ds.mu.Lock()
	defer ds.mu.Unlock()
	a := ds.pending(c.FormValue("user_code"))
	if a == nil {
		return d.renderDevice(c, http.StatusNotFound, devicePage{Ask: true, Message: "No sign-in is waiting for that code (it may have expired or been used): start again."})
	}
	if subtle.ConstantTimeCompare([]byte(c.FormValue("form_token")), []byte(a.formToken)) != 1 {
		return echo.NewHTTPError(http.StatusForbidden, "the approval form's token is missing or wrong: open the verification page again")
	}
	if c.FormValue("action") == "deny" {
		a.denied = true
		d.log.Info("device sign-in denied", "client_id", a.clientID)
		return d.renderDevice(c, http.StatusOK, devicePage{Message: "Sign-in denied. You can close this page."})
	}
	again := devicePage{UserCode: formatUserCode(a.userCode), FormToken: a.formToken, Subject: c.FormValue("sub")}
	if c.FormValue("action") != "approve" {
		again.Message = "Choose Approve or Deny."
		return d.renderDevice(c, http.StatusBadRequest, again)
	}
	ttl := time.Hour
	if s := strings.TrimSpace(c.FormValue("ttl")); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			again.Message = fmt.Sprintf("Token lifetime %q is not a positive duration (e.g. 1h, 30m).", s)
			return d.renderDevice(c, http.StatusBadRequest, again)
		}
		ttl = v
	}
	var groups []string
	for _, g := range strings.Split(c.FormValue("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	sub := strings.TrimSpace(c.FormValue("sub"))
	tok, err := d.Mint(TokenRequest{Subject: sub, Name: strings.TrimSpace(c.FormValue("name")), Groups: groups, TTL: ttl, Kind: "human"})
	if err != nil {
		again.Message = "Cannot sign in: " + err.Error() + "."
		return d.renderDevice(c, http.StatusBadRequest, again)
	}
	a.token, a.who = tok, person{Subject: sub, Name: strings.TrimSpace(c.FormValue("name")), Groups: groups, TTL: ttl}
	d.log.Info("device sign-in approved", "client_id", a.clientID, "sub", sub, "groups", groups, "ttl", ttl)
	return d.renderDevice(c, http.StatusOK, devicePage{Message: fmt.Sprintf("Signed in as %s. You can close this page and return to your terminal.", sub)})
}
