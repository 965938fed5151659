package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"html"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query/console"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/identity"
)

// samlEnv is a console signing people in with SAML at a real identity provider (crewjam's
// samlidp, with users and groups), both over HTTP on loopback, and the console's browser
// sessions in a real NATS KV. The IdP is on localhost and the console on 127.0.0.1, so that a
// browser's cookies for one are not sent to the other.
type samlEnv struct {
	idp        *samlidp.Server
	idpURL     string
	consoleURL string
	entityID   string
	idpKey     *rsa.PrivateKey
	idpCert    *x509.Certificate
}

const (
	samlUser     = "alice"
	samlPassword = "correct horse battery staple"
	samlSkew     = 90 * time.Second
)

func newSAMLEnv(t *testing.T, secure bool) *samlEnv {
	t.Helper()
	ctx := context.Background()
	env := &samlEnv{}

	// The identity provider, with one person in two groups.
	var idpHandler http.Handler = http.NotFoundHandler()
	idpTS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { idpHandler.ServeHTTP(w, r) }))
	t.Cleanup(idpTS.Close)
	env.idpURL = strings.Replace(idpTS.URL, "127.0.0.1", "localhost", 1)
	u, err := url.Parse(env.idpURL)
	require.NoError(t, err)
	env.idpKey, env.idpCert = newKeyPair(t, "test idp")
	env.idp, err = samlidp.New(samlidp.Options{URL: *u, Key: env.idpKey, Certificate: env.idpCert, Store: &samlidp.MemoryStore{},
		Logger: log.New(io.Discard, "", 0)})
	require.NoError(t, err)
	idpHandler = env.idp
	user, _ := json.Marshal(map[string]any{"name": samlUser, "password": samlPassword, "email": "alice@example.com",
		"common_name": "Alice Liddell", "groups": []string{"approvers", "auditors"}})
	put(t, env.idpURL+"/users/"+samlUser, user, http.StatusNoContent)

	// The console, with the IdP's metadata fetched as console.saml.idp_metadata_url does, and
	// its key pair read from PEM files as console.saml.certificate_file and key_file are.
	b := bustest.Connect(t)
	kv, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketWebSessions, History: 1, TTL: 13 * time.Hour})
	require.NoError(t, err)
	publicURL := "http://127.0.0.1"
	if secure {
		publicURL = "https://console.example.com" // Secure cookies; the Go client sends no Origin
	}
	sessions := identity.NewWebSessions(kv, kv, 30*time.Minute, 12*time.Hour, publicURL)
	verifier := identity.NewVerifier(ctx, nil, slog.New(slog.DiscardHandler))
	verifier.UseWebSessions(sessions)
	e := echo.New()
	consoleTS := httptest.NewServer(e)
	t.Cleanup(consoleTS.Close)
	env.consoleURL = consoleTS.URL
	env.entityID = env.consoleURL + "/auth/saml/metadata"

	md, err := console.FetchSAMLMetadata(ctx, http.DefaultClient, env.idpURL+"/metadata")
	require.NoError(t, err)
	certFile, keyFile := writeKeyPair(t, "test console")
	cert, err := console.ReadSAMLCertificate(certFile)
	require.NoError(t, err)
	key, err := console.ReadSAMLKey(keyFile, cert)
	require.NoError(t, err)
	c, err := console.New(console.Options{PublicURL: env.consoleURL, Sessions: sessions, Verifier: verifier, Log: slog.New(slog.DiscardHandler),
		SAML: &console.SAMLOptions{IDPMetadata: md, Key: key, Certificate: cert, GroupsAttribute: "eduPersonAffiliation", NameAttribute: "cn", MaxClockSkew: samlSkew}})
	require.NoError(t, err)
	c.Register(e)

	// The console registered at the IdP from its metadata URL, as docs/console.md says.
	resp, err := http.Get(env.entityID)
	require.NoError(t, err)
	spMetadata, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(spMetadata))
	put(t, env.idpURL+"/services/console", spMetadata, http.StatusNoContent)
	return env
}

func put(t *testing.T, u string, body []byte, want int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, want, resp.StatusCode, "PUT %s", u)
}

// newKeyPair is an RSA key and a self-signed certificate valid for two hours around now.
func newKeyPair(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return key, cert
}

func writeKeyPair(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, cert := newKeyPair(t, cn)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return certFile, keyFile
}

// browser is an HTTP client with a cookie jar that does not follow redirects, so that each
// step of a sign-in can be looked at.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	resp.Body.Close()
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(b.t, err)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// form reads the action and the hidden fields of the page's form.
func form(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := formAction.FindStringSubmatch(page)
	require.NotNil(t, m, "no form in %s", page)
	v := url.Values{}
	for _, h := range hiddenInput.FindAllStringSubmatch(page, -1) {
		v.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	return html.UnescapeString(m[1]), v
}

// toIdP starts a sign-in at the console and goes through the IdP (signing in there when it
// asks) up to the page that posts the IdP's response back: its action and fields.
func (env *samlEnv) toIdP(t *testing.T, b *browser, next string) (string, url.Values) {
	t.Helper()
	resp, body := b.get(env.consoleURL + "/auth/saml/login?next=" + url.QueryEscape(next))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	to := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(to, env.idpURL+"/sso?"), to)
	q, _ := url.Parse(to)
	require.NotEmpty(t, q.Query().Get("Signature"), "the AuthnRequest is not signed")
	resp, body = b.get(to)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	if strings.Contains(body, `name="password"`) {
		// samlidp's sign-in form posts the request on without its HTTP-Redirect signature,
		// which it then refuses from a service provider that signs its requests: sign in at
		// the IdP on its own, then ask again.
		resp, body = b.post(env.idpURL+"/login", url.Values{"user": {samlUser}, "password": {samlPassword}})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		resp, body = b.get(to)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	action, f := form(t, body)
	require.NotEmpty(t, f.Get("SAMLResponse"), body)
	return action, f
}

// signIn goes through a whole sign-in and returns the console's answer to the response.
func (env *samlEnv) signIn(t *testing.T, b *browser, next string) (*http.Response, string) {
	t.Helper()
	action, f := env.toIdP(t, b, next)
	require.Equal(t, env.consoleURL+"/auth/saml/acs", action)
	return b.post(action, f)
}

func (env *samlEnv) me(t *testing.T, b *browser) console.Me {
	t.Helper()
	resp, body := b.get(env.consoleURL + "/api/v1/me")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var m console.Me
	require.NoError(t, json.Unmarshal([]byte(body), &m))
	return m
}

// refused checks a clear refusal: a 4xx HTML page that says why, with no XML or trace in it.
func refused(t *testing.T, resp *http.Response, body, want string) {
	t.Helper()
	require.GreaterOrEqual(t, resp.StatusCode, 400, body)
	require.Less(t, resp.StatusCode, 500, body)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"), resp.Header.Get("Content-Type"))
	require.Contains(t, body, "Sign-in refused")
	require.Contains(t, html.UnescapeString(body), want)
	for _, leak := range []string{"<saml", "<samlp", "SAMLResponse", "goroutine", ".go:"} {
		require.NotContains(t, body, leak)
	}
	for _, ck := range resp.Cookies() {
		require.NotEqual(t, "gh_session", ck.Name, "a refused sign-in set a session cookie")
	}
}

// makerFunc and writerFunc let a test change what the IdP asserts and what it sends.
type makerFunc func(*saml.IdpAuthnRequest, *saml.Session) error

func (f makerFunc) MakeAssertion(r *saml.IdpAuthnRequest, s *saml.Session) error { return f(r, s) }

type writerFunc func(http.ResponseWriter, *saml.IdpAuthnRequest) error

func (f writerFunc) WriteResponse(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
	return f(w, r)
}

// assert makes the IdP's assertions as usual, then changes them with change.
func (env *samlEnv) assert(t *testing.T, change func(*saml.Assertion)) {
	env.idp.IDP.AssertionMaker = makerFunc(func(r *saml.IdpAuthnRequest, s *saml.Session) error {
		if err := (saml.DefaultAssertionMaker{}).MakeAssertion(r, s); err != nil {
			return err
		}
		change(r.Assertion)
		return nil
	})
	t.Cleanup(func() { env.idp.IDP.AssertionMaker = nil })
}

func (env *samlEnv) write(t *testing.T, f writerFunc) {
	env.idp.IDP.ResponseWriter = f
	t.Cleanup(func() { env.idp.IDP.ResponseWriter = nil })
}

// forger is an IdP at the same addresses as the real one, with another key.
func (env *samlEnv) forger(t *testing.T) *saml.IdentityProvider {
	key, cert := newKeyPair(t, "test idp")
	return &saml.IdentityProvider{Key: key, Certificate: cert, MetadataURL: env.idp.IDP.MetadataURL, SSOURL: env.idp.IDP.SSOURL}
}

func shift(a *saml.Assertion, d time.Duration) {
	a.IssueInstant = a.IssueInstant.Add(d)
	a.Conditions.NotBefore = a.Conditions.NotBefore.Add(d)
	a.Conditions.NotOnOrAfter = a.Conditions.NotOnOrAfter.Add(d)
	for _, sc := range a.Subject.SubjectConfirmations {
		sc.SubjectConfirmationData.NotOnOrAfter = sc.SubjectConfirmationData.NotOnOrAfter.Add(d)
	}
}

func TestSAMLSignIn(t *testing.T) {
	env := newSAMLEnv(t, false)
	ends := time.Now().Add(20 * time.Minute).Truncate(time.Second)
	env.assert(t, func(a *saml.Assertion) { a.AuthnStatements[0].SessionNotOnOrAfter = &ends })
	b := newBrowser(t)

	resp, body := b.get(env.consoleURL + "/auth/saml/login?next=/approvals")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	var bind *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "gh_signin" {
			bind = ck
		}
	}
	require.NotNil(t, bind, "no browser-binding cookie")
	require.True(t, bind.HttpOnly)
	require.Equal(t, "/auth/saml/", bind.Path)
	require.Equal(t, http.SameSiteNoneMode, bind.SameSite, "the IdP's cross-site POST would not carry the binding cookie")
	require.True(t, bind.Secure)

	resp, body = env.signIn(t, b, "/approvals")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	require.Equal(t, "/approvals", resp.Header.Get("Location"))
	m := env.me(t, b)
	require.Equal(t, "Alice Liddell", m.Name)
	require.Equal(t, "alice@example.com", m.Subject)
	require.Equal(t, env.idp.IDP.MetadataURL.String(), m.Issuer)
	require.Equal(t, []string{"approvers", "auditors"}, m.Groups)
	require.Equal(t, "saml", m.Method)
	require.NotNil(t, m.Expires)
	require.WithinDuration(t, ends, *m.Expires, time.Second, "the session ends with the IdP's SessionNotOnOrAfter")
}

// An IdP whose clock is behind ours, but by less than the allowed skew, still signs people in.
func TestSAMLClockSkewWithinLimit(t *testing.T) {
	env := newSAMLEnv(t, false)
	env.assert(t, func(a *saml.Assertion) { shift(a, -60*time.Second) })
	b := newBrowser(t)
	resp, body := env.signIn(t, b, "/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	require.Equal(t, "Alice Liddell", env.me(t, b).Name)
}

func TestSAMLRefusals(t *testing.T) {
	env := newSAMLEnv(t, false)
	other := "https://other.example"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		want  string
	}{
		{"response and assertion signed by another key", func(t *testing.T) {
			forged := env.forger(t)
			env.write(t, func(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
				r.IDP = forged
				return r.WriteResponse(w)
			})
		}, "does not verify with the identity provider's certificate"},
		{"assertion signed by another key in a genuinely signed response", func(t *testing.T) {
			forged := env.forger(t)
			env.write(t, func(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
				real := r.IDP
				r.IDP = forged
				if err := r.MakeAssertionEl(); err != nil {
					return err
				}
				r.IDP = real
				return r.WriteResponse(w)
			})
		}, "does not verify with the identity provider's certificate"},
		{"unsigned assertion in a signed response", func(t *testing.T) {
			env.write(t, func(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
				r.AssertionEl = r.Assertion.Element()
				return r.WriteResponse(w)
			})
		}, "is not signed by the identity provider"},
		{"nothing signed", func(t *testing.T) {
			env.write(t, func(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
				r.AssertionEl = r.Assertion.Element()
				if err := r.MakeResponse(); err != nil {
					return err
				}
				r.ResponseEl.RemoveChild(r.ResponseEl.FindElement("./Signature"))
				return r.WriteResponse(w)
			})
		}, "is not signed by the identity provider"},
		{"wrong audience", func(t *testing.T) {
			env.assert(t, func(a *saml.Assertion) {
				a.Conditions.AudienceRestrictions = []saml.AudienceRestriction{{Audience: saml.Audience{Value: other + "/saml/metadata"}}}
			})
		}, "is for another service provider"},
		{"wrong recipient", func(t *testing.T) {
			env.assert(t, func(a *saml.Assertion) {
				a.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = other + "/auth/saml/acs"
			})
		}, "addressed to another place"},
		{"wrong destination", func(t *testing.T) {
			env.write(t, func(w http.ResponseWriter, r *saml.IdpAuthnRequest) error {
				acs := r.ACSEndpoint
				elsewhere := *acs
				elsewhere.Location = other + "/auth/saml/acs"
				r.ACSEndpoint = &elsewhere
				if err := r.MakeResponse(); err != nil {
					return err
				}
				r.ACSEndpoint = acs
				return r.WriteResponse(w)
			})
		}, "addressed to another place"},
		{"expired: the IdP's clock 10 minutes behind", func(t *testing.T) {
			env.assert(t, func(a *saml.Assertion) { shift(a, -10*time.Minute) })
		}, "has expired"},
		{"not yet valid: the IdP's clock 10 minutes ahead", func(t *testing.T) {
			env.assert(t, func(a *saml.Assertion) { shift(a, 10*time.Minute) })
		}, "not valid yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			b := newBrowser(t)
			resp, body := env.signIn(t, b, "/")
			refused(t, resp, body, tc.want)
			resp, body = b.get(env.consoleURL + "/api/v1/me")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		})
	}
}

// The same POST twice: the second is refused (its RelayState was used); and an assertion ID
// seen before is refused even in the answer to another request.
func TestSAMLReplay(t *testing.T) {
	env := newSAMLEnv(t, false)
	t.Run("same response posted twice", func(t *testing.T) {
		b := newBrowser(t)
		action, f := env.toIdP(t, b, "/")
		resp, body := b.post(action, f)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		resp, body = b.post(action, f)
		refused(t, resp, body, "already used")
	})
	t.Run("same assertion ID in the answer to a new request", func(t *testing.T) {
		env.assert(t, func(a *saml.Assertion) { a.ID = "id-always-the-same" })
		b := newBrowser(t)
		resp, body := env.signIn(t, b, "/")
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		resp, body = env.signIn(t, b, "/")
		refused(t, resp, body, "This assertion was already used")
	})
}

// Responses the console did not ask for: an IdP-initiated sign-in, with no RelayState or
// with the RelayState of a sign-in this browser started (whose request it does not answer),
// and a response to a request made in another browser.
func TestSAMLUnsolicited(t *testing.T) {
	env := newSAMLEnv(t, false)
	shortcut, _ := json.Marshal(map[string]any{"name": "console", "service_provider": env.entityID})
	put(t, env.idpURL+"/shortcuts/console", shortcut, http.StatusNoContent)
	b := newBrowser(t)
	resp, body := env.signIn(t, b, "/") // signed in at the IdP too
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	unsolicited := func() (string, url.Values) {
		resp, body := b.get(env.idpURL + "/login/console")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return form(t, body)
	}

	t.Run("IdP-initiated", func(t *testing.T) {
		action, f := unsolicited()
		require.Equal(t, env.consoleURL+"/auth/saml/acs", action)
		resp, body := b.post(action, f)
		refused(t, resp, body, "not asked for by this console")
	})
	t.Run("IdP-initiated with a pending RelayState", func(t *testing.T) {
		resp, body := b.get(env.consoleURL + "/auth/saml/login")
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		to, err := url.Parse(resp.Header.Get("Location"))
		require.NoError(t, err)
		action, f := unsolicited()
		f.Set("RelayState", to.Query().Get("RelayState"))
		resp, body = b.post(action, f)
		refused(t, resp, body, "does not answer the sign-in request this browser started")
	})
	t.Run("answer posted from another browser", func(t *testing.T) {
		action, f := env.toIdP(t, b, "/")
		resp, body := newBrowser(t).post(action, f)
		refused(t, resp, body, "started in another browser")
		resp, body = b.post(action, f) // and it is spent
		refused(t, resp, body, "already used")
	})
	t.Run("invented RelayState", func(t *testing.T) {
		action, f := unsolicited()
		f.Set("RelayState", "made-up")
		resp, body := b.post(action, f)
		refused(t, resp, body, "does not belong to a sign-in started here")
	})
	t.Run("artifact binding", func(t *testing.T) {
		resp, body := b.post(env.consoleURL+"/auth/saml/acs", url.Values{"SAMLart": {"AAQAAA"}, "RelayState": {"x"}})
		refused(t, resp, body, "HTTP-POST binding only")
	})
}

// The metadata is valid SP metadata (the IdP registered it in newSAMLEnv): entity ID, the
// ACS with the POST binding, signed requests, and the console's certificate.
func TestSAMLMetadata(t *testing.T) {
	env := newSAMLEnv(t, false)
	resp, err := http.Get(env.consoleURL + "/auth/saml/metadata")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/samlmetadata+xml", resp.Header.Get("Content-Type"))
	var md saml.EntityDescriptor
	require.NoError(t, xml.NewDecoder(resp.Body).Decode(&md))
	require.Equal(t, env.entityID, md.EntityID)
	require.Len(t, md.SPSSODescriptors, 1)
	sp := md.SPSSODescriptors[0]
	require.Equal(t, []saml.IndexedEndpoint{{Binding: saml.HTTPPostBinding, Location: env.consoleURL + "/auth/saml/acs", Index: 1}}, sp.AssertionConsumerServices)
	require.NotNil(t, sp.AuthnRequestsSigned)
	require.True(t, *sp.AuthnRequestsSigned)
	require.NotNil(t, sp.WantAssertionsSigned)
	require.True(t, *sp.WantAssertionsSigned)
	uses := map[string]bool{}
	for _, k := range sp.KeyDescriptors {
		uses[k.Use] = true
		require.Len(t, k.KeyInfo.X509Data.X509Certificates, 1)
	}
	require.True(t, uses["signing"], "no signing certificate")
	require.Empty(t, sp.SingleLogoutServices)

	registered, err := env.idp.GetServiceProvider(nil, env.entityID)
	require.NoError(t, err, "the IdP did not take the metadata")
	require.Equal(t, env.entityID, registered.EntityID)
}

// Over https the binding cookie is SameSite=None and Secure: the IdP's POST to the ACS is a
// cross-site POST, which carries no Lax cookie.
func TestSAMLBindingCookieOverHTTPS(t *testing.T) {
	env := newSAMLEnv(t, true)
	resp, body := newBrowser(t).get(env.consoleURL + "/auth/saml/login")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	var bind *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-gh_signin-saml" {
			bind = ck
		}
	}
	require.NotNil(t, bind, "over https the binding cookie is a __Host- cookie (no sibling subdomain can plant it)")
	require.Equal(t, http.SameSiteNoneMode, bind.SameSite)
	require.True(t, bind.Secure)
	require.True(t, bind.HttpOnly)
	require.Equal(t, "/", bind.Path)
	require.Empty(t, bind.Domain)
}

func TestSAMLMetadataParsing(t *testing.T) {
	idp := `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/%s">` +
		`<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">` +
		`<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/>` +
		`</IDPSSODescriptor></EntityDescriptor>`
	sp := `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor>`
	all := func(es ...string) string {
		return `<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">` + strings.Join(es, "") + `</EntitiesDescriptor>`
	}
	for _, tc := range []struct{ name, doc, wantID, wantErr string }{
		{"entity", strings.Replace(idp, "%s", "a", 1), "https://idp.example/a", ""},
		{"aggregate of one IdP", all(sp, strings.Replace(idp, "%s", "a", 1)), "https://idp.example/a", ""},
		{"aggregate of two IdPs", all(strings.Replace(idp, "%s", "a", 1), strings.Replace(idp, "%s", "b", 1)), "", "several identity providers"},
		{"SP metadata", sp, "", "describes no identity provider"},
		{"not metadata", `<html/>`, "", "not SAML metadata"},
		{"not XML", `{}`, "", "parse the SAML metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md, err := console.ParseSAMLMetadata([]byte(tc.doc))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantID, md.EntityID)
		})
	}

	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte(" "), console.MaxSAMLMetadataBytes+1))
	}))
	defer big.Close()
	_, err := console.FetchSAMLMetadata(context.Background(), http.DefaultClient, big.URL)
	require.ErrorContains(t, err, "larger than")
}

// A name attribute that could pass for someone else's (invisible or control characters) is
// not shown: the NameID is.
func TestSAMLUnusableNameFallsBackToNameID(t *testing.T) {
	env := newSAMLEnv(t, false)
	env.assert(t, func(a *saml.Assertion) {
		for i, st := range a.AttributeStatements {
			for j, at := range st.Attributes {
				if at.Name == "cn" || at.FriendlyName == "cn" {
					a.AttributeStatements[i].Attributes[j].Values = []saml.AttributeValue{{Type: "xs:string", Value: "Bob\u202e moc.elpmaxe@ecila"}}
				}
			}
		}
	})
	b := newBrowser(t)
	resp, body := env.signIn(t, b, "/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	m := env.me(t, b)
	require.Equal(t, "alice@example.com", m.Name)
}
