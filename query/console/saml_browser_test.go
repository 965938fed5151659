package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query/console"
	"github.com/gatehouse/gatehouse/services/dev/browsertest"
)

// TestSAMLSignInInChromium signs in through a SAML IdP in a real browser: the IdP's
// response comes back as a cross-site form post (the IdP is on localhost, the console on
// 127.0.0.1), which is what the sign-in's browser binding must survive.
func TestSAMLSignInInChromium(t *testing.T) {
	env := newSAMLEnv(t, false)
	b := browsertest.New(t, env.consoleURL, "saml")

	// samlidp's own sign-in form cannot carry a signed request on (see toIdP): the person
	// signs in at the IdP first, and the browser holds the IdP's session cookie.
	idp := newBrowser(t)
	resp, body := idp.post(env.idpURL+"/login", url.Values{"user": {samlUser}, "password": {samlPassword}})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	u, _ := url.Parse(env.idpURL)
	cks := idp.c.Jar.Cookies(u)
	require.NotEmpty(t, cks, "the IdP set no session cookie")
	for _, ck := range cks {
		b.SetCookie(env.idpURL+"/", ck.Name, ck.Value)
	}

	b.Open("/approvals", `a[href^="/auth/saml/login"]`)
	b.Shot("sign-in")
	b.Accessible("sign-in")
	b.Run(chromedp.Click(chromedp.CSS(`a[href^="/auth/saml/login"]`)))
	b.WaitJS(`location.origin === ` + browsertest.JSString(env.consoleURL) + ` && location.pathname !== "/auth/login" && document.readyState === "complete"`)
	b.Shot("signed-in")
	var me console.Me
	raw := browsertest.Eval[json.RawMessage](b, `fetch('/api/v1/me').then(r => r.json())`)
	require.NoError(t, json.Unmarshal(raw, &me))
	require.Equal(t, "Alice Liddell", me.Name)
	require.Equal(t, "saml", me.Method)
	require.Equal(t, []string{"approvers", "auditors"}, me.Groups)
	require.True(t, strings.HasPrefix(b.Location(), env.consoleURL+"/approvals"), "the sign-in did not come back to the page it began on")
}
