package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"
)

// DevIssuerPath is where the development issuer is mounted on the HTTP server.
const DevIssuerPath = "/dev/oidc"

// DevAudience is the audience of development tokens.
const DevAudience = "gatehouse"

// MaxDevTokenTTL bounds development tokens: even in dev, tokens are short-lived.
const MaxDevTokenTTL = 24 * time.Hour

// DevIssuer is a DEVELOPMENT-ONLY OIDC issuer: discovery, JWKS and a token endpoint that
// mints a token for any subject asked for, to loopback callers only; the device
// authorization grant (RFC 8628) and the authorization code flow with PKCE, whose pages,
// on loopback too, sign in whoever the person at the keyboard picks; ID tokens, and
// refresh tokens rotated at each use. It exists so that a local trial needs no external IdP.
// Never enable it in production.
type DevIssuer struct {
	issuer string
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	log    *slog.Logger
	// devices are the pending device authorizations (RFC 8628, device.go).
	devices devices
	// auth is the authorization code flow's state and the refresh tokens (authcode.go).
	auth authState
}

// NewDevIssuer loads or creates the signing key under dir. issuer is the public URL of the
// issuer (http://<listen>/dev/oidc).
func NewDevIssuer(issuer, dir string, log *slog.Logger) (*DevIssuer, error) {
	key, err := loadOrCreateKey(filepath.Join(dir, "dev-issuer-key.pem"))
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	kid := hex.EncodeToString(sum[:8])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, fmt.Errorf("dev issuer signer: %w", err)
	}
	return &DevIssuer{issuer: issuer, key: key, kid: kid, signer: signer, log: log, devices: newDevices(), auth: newAuthState()}, nil
}

func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("dev issuer key %s: not PEM", path)
		}
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("dev issuer key dir: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	return key, nil
}

// Issuer is the issuer URL.
func (d *DevIssuer) Issuer() string { return d.issuer }

// TokenRequest is what the token endpoint mints.
type TokenRequest struct {
	Subject    string
	Groups     []string
	TTL        time.Duration
	Audience   string
	Kind       string
	OnBehalfOf string
	// Name, when set, is the token's preferred_username claim (the caller's readable name).
	Name string
	// Extra claims are added last, over the others (tests shape tokens as other IdPs do).
	Extra map[string]any
}

// Mint signs a token issued now.
func (d *DevIssuer) Mint(r TokenRequest) (string, error) { return d.MintAt(r, time.Now()) }

// MintAt signs a token as if issued at now (tests use it for expired tokens).
func (d *DevIssuer) MintAt(r TokenRequest, now time.Time) (string, error) {
	if r.Subject == "" {
		return "", errors.New("subject is required")
	}
	if r.TTL <= 0 {
		r.TTL = time.Hour
	}
	if r.TTL > MaxDevTokenTTL {
		return "", fmt.Errorf("ttl %s is longer than the %s allowed", r.TTL, MaxDevTokenTTL)
	}
	if r.Audience == "" {
		r.Audience = DevAudience
	}
	claims := map[string]any{
		"iss":    d.issuer,
		"sub":    r.Subject,
		"aud":    r.Audience,
		"iat":    now.Unix(),
		"nbf":    now.Add(-30 * time.Second).Unix(),
		"exp":    now.Add(r.TTL).Unix(),
		"groups": r.Groups,
		"gh_dev": true,
	}
	if r.Kind != "" {
		claims["gh_kind"] = r.Kind
	}
	if r.OnBehalfOf != "" {
		claims["act"] = map[string]any{"sub": r.OnBehalfOf}
	}
	if r.Name != "" {
		claims["preferred_username"] = r.Name
	}
	for k, v := range r.Extra {
		claims[k] = v
	}
	return jwt.Signed(d.signer).Claims(claims).Serialize()
}

// Register mounts discovery, JWKS, the token endpoint, the device flow's and the
// authorization code flow's endpoints under DevIssuerPath.
func (d *DevIssuer) Register(e *echo.Echo) {
	g := e.Group(DevIssuerPath, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set("X-Gatehouse-Warning", "development-only issuer; never use in production")
			return next(c)
		}
	})
	g.GET("/.well-known/openid-configuration", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{
			"issuer":                                d.issuer,
			"jwks_uri":                              d.issuer + "/jwks",
			"token_endpoint":                        d.issuer + "/token",
			"authorization_endpoint":                d.issuer + "/authorize",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials", DeviceGrantType},
			"device_authorization_endpoint":         d.issuer + "/device/code",
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"none"},
			"scopes_supported":                      []string{"openid", "profile", "email", "groups", "offline_access"},
			"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "email",
				"preferred_username", "groups"},
		})
	})
	g.GET("/jwks", func(c echo.Context) error {
		return c.JSON(http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &d.key.PublicKey, KeyID: d.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	g.POST("/token", d.token, loopbackOnly)
	g.POST("/device/code", d.deviceCode, loopbackOnly)
	g.GET("/device", d.devicePage, loopbackOnly)
	g.POST("/device", d.deviceDecide, loopbackOnly)
	g.GET("/authorize", d.authorize, loopbackOnly)
	g.POST("/authorize", d.authorizeDecide, loopbackOnly)
	g.GET("/signin.css", signInStyle)
}

// loopbackOnly refuses callers that are not on this machine: whatever mints a token does.
// The Host the request names must be this machine too: a web page on another site whose
// name a DNS rebinding points at 127.0.0.1 reaches the loopback address, but under its
// own name, and must not mint tokens.
func loopbackOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return echo.NewHTTPError(http.StatusForbidden, "the development issuer mints tokens for loopback clients only")
		}
		if !LoopbackHost(c.Request().Host) {
			return echo.NewHTTPError(http.StatusForbidden, "the development issuer answers requests for 127.0.0.1, ::1 or localhost only (this one names "+strconv.Quote(c.Request().Host)+")")
		}
		return next(c)
	}
}

// LoopbackHost reports whether a Host header (host or host:port) names this machine: a
// loopback address or localhost.
func LoopbackHost(hostport string) bool {
	h := hostport
	if x, _, err := net.SplitHostPort(hostport); err == nil {
		h = x
	}
	return config.IsLoopbackHost(strings.Trim(h, "[]"))
}

func (d *DevIssuer) token(c echo.Context) error {
	switch c.FormValue("grant_type") {
	case DeviceGrantType:
		return d.deviceToken(c)
	case "authorization_code":
		return d.codeToken(c)
	case "refresh_token":
		return d.refreshToken(c)
	}
	var err error
	var ttl time.Duration
	if s := c.FormValue("ttl"); s != "" {
		if ttl, err = time.ParseDuration(s); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("ttl %q: %v", s, err))
		}
	}
	var groups []string
	for _, g := range strings.Split(c.FormValue("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	tok, err := d.Mint(TokenRequest{Subject: c.FormValue("sub"), Groups: groups, TTL: ttl,
		Audience: c.FormValue("aud"), Kind: c.FormValue("kind"), OnBehalfOf: c.FormValue("on_behalf_of"), Name: c.FormValue("name")})
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	d.log.Info("dev token minted", "sub", c.FormValue("sub"), "groups", groups, "ttl", ttl)
	return c.JSON(http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}
