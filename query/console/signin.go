package console

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/services/identity"
)

// signIn is what every sign-in keeps, under a random secret (the OIDC state, the SAML
// RelayState), while the person is at the identity provider.
type signIn struct {
	Next    string    `json:"next"`
	Created time.Time `json:"created"`
	// Browser is the value of the sign-in cookie set on the browser that started the
	// sign-in: an answer arriving in another browser (login CSRF) is refused.
	Browser string `json:"browser"`
}

func (s *signIn) under() *signIn { return s }

// underWay is a flow's record of a sign-in under way (it embeds signIn).
type underWay interface{ under() *signIn }

// startSignIn keeps v (with the browser bound for flow, and next) under the flow's secret.
func (c *Console) startSignIn(ctx echo.Context, flow, secret string, site http.SameSite, v underWay) error {
	s := v.under()
	s.Next, s.Created, s.Browser = localPath(ctx.QueryParam("next")), time.Now(), c.bindBrowser(ctx, flow, site)
	return c.opts.Sessions.Pending(ctx.Request().Context(), flow+"."+secret, v)
}

// takeSignIn takes the sign-in kept under the flow's secret, once, into v, and checks it
// was started in this browser less than pendingLifetime ago. When it is not usable, ok is
// false and the refusal page has been written (done is what the handler returns).
func (c *Console) takeSignIn(ctx echo.Context, flow, secret string, v underWay, unknown string) (ok bool, done error) {
	if err := c.opts.Sessions.Take(ctx.Request().Context(), flow+"."+secret, v); err != nil {
		if errors.Is(err, identity.ErrNoPending) {
			return false, c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", unknown)
		}
		return false, c.unavailable(ctx, "Sign-in failed", err)
	}
	s := v.under()
	if !c.sameBrowser(ctx, flow, s.Browser) {
		return false, c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused",
			"This sign-in was started in another browser (or its cookie was lost): a sign-in must end where it began. Start again.")
	}
	if time.Since(s.Created) > pendingLifetime {
		return false, c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", "The sign-in took more than 10 minutes. Start again.")
	}
	return true, nil
}
