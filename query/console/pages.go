package console

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// The sign-in and error pages are rendered on the server: they must work before any
// session exists, and say clearly what went wrong.
var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Gatehouse</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/console.css">
</head>
<body class="auth">
<main class="auth-card" id="main">
<h1>{{.Title}}</h1>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
{{if .Detail}}<p class="error" role="alert">{{.Detail}}</p>{{end}}
{{if .Login}}
<ul class="signin">
{{if .OIDC}}<li><a class="button primary" href="/auth/oidc/login?next={{.Next}}">Sign in with OIDC</a></li>{{end}}
{{if .SAML}}<li><a class="button" href="/auth/saml/login?next={{.Next}}">Sign in with SAML</a></li>{{end}}
</ul>
{{else}}
<p><a class="button" href="/auth/login">Back to sign-in</a></p>
{{end}}
</main>
</body>
</html>
`))

type pageData struct {
	Title, Notice, Detail string
	Login, OIDC, SAML     bool
	Next                  string
}

func (c *Console) render(ctx echo.Context, status int, d pageData) error {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		return err
	}
	ctx.Response().Header().Set("Cache-Control", "no-store")
	return ctx.HTMLBlob(status, b.Bytes())
}

// errorPage is a clear page for a refused or failed sign-in (never a stack trace, never a
// token).
func (c *Console) errorPage(ctx echo.Context, status int, title, detail string) error {
	return c.render(ctx, status, pageData{Title: title, Detail: detail})
}

func (c *Console) loginPage(ctx echo.Context) error {
	q := ctx.QueryParams()
	d := pageData{Title: "Sign in to Gatehouse", Login: true, OIDC: c.oidc != nil, SAML: c.saml != nil, Next: localPath(q.Get("next"))}
	switch {
	case q.Has("signed_out"):
		d.Notice = "You are signed out."
	case q.Has("ended"):
		d.Notice = "Your session has ended (it expired, was signed out, or its cookie is not valid). Sign in again."
	}
	return c.render(ctx, http.StatusOK, d)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
