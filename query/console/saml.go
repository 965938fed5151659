package console

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/labstack/echo/v4"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/identity"
)

// The console as a SAML 2.0 service provider, Web Browser SSO profile, SP-initiated only:
//
//	GET  /auth/saml/login?next=  AuthnRequest (signed, HTTP-Redirect) to the IdP; its ID is kept
//	                             with Pending under a random RelayState, with next and the value
//	                             of a sign-in cookie set on this browser
//	POST /auth/saml/acs          the IdP's Response (HTTP-POST): the RelayState must name a pending
//	                             sign-in of this console (taken once) made in this browser, the
//	                             Response must answer its request, and its assertion must be
//	                             signed by the IdP itself, for this console, in time, and new
//	GET  /auth/saml/metadata     the service provider's metadata, to register it at the IdP

// SAMLOptions configure the console as a SAML 2.0 service provider.
type SAMLOptions struct {
	// IDPMetadata is the identity provider's metadata: its entity ID, its single sign-on URL and
	// the certificates whose keys sign its assertions (the only keys trusted).
	IDPMetadata *saml.EntityDescriptor
	// Key signs the authentication requests (and, an RSA key, decrypts encrypted assertions);
	// Certificate is its certificate, published in the metadata.
	Key         crypto.Signer
	Certificate *x509.Certificate
	// EntityID is the service provider's (default <public_url>/auth/saml/metadata): the
	// audience every assertion must name.
	EntityID string
	// GroupsAttribute names the assertion attribute with the person's groups, by Name or
	// FriendlyName (default groups); NameAttribute the one with a readable name (default: the
	// NameID).
	GroupsAttribute string
	NameAttribute   string
	// MaxClockSkew bounds the difference between the IdP's clock and ours (default 90s).
	MaxClockSkew time.Duration
}

// maxSAMLResponseBytes bounds the posted form an ACS request may carry.
const maxSAMLResponseBytes = 1 << 20

type samlLogin struct {
	c    *Console
	opts SAMLOptions
	// sp is shared and never changed after newSAMLLogin; each response is checked with a copy
	// (see forResponse).
	sp *saml.ServiceProvider
}

// pendingSAML is kept under the RelayState until the ACS takes it, once.
type pendingSAML struct {
	signIn
	RequestID string `json:"request_id"`
}

func newSAMLLogin(c *Console, publicURL string, o SAMLOptions) (*samlLogin, error) {
	if o.IDPMetadata == nil {
		return nil, errors.New("console: SAML needs the identity provider's metadata")
	}
	if o.Key == nil || o.Certificate == nil {
		return nil, errors.New("console: SAML needs the service provider's key and certificate")
	}
	if !samePublicKey(o.Key.Public(), o.Certificate.PublicKey) {
		return nil, errors.New("console: the SAML key is not the key of the SAML certificate")
	}
	method, err := signatureMethod(o.Key)
	if err != nil {
		return nil, err
	}
	if o.EntityID == "" {
		o.EntityID = publicURL + "/auth/saml/metadata"
	}
	if o.GroupsAttribute == "" {
		o.GroupsAttribute = "groups"
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = 90 * time.Second
	}
	metadataURL, err := url.Parse(publicURL + "/auth/saml/metadata")
	if err != nil {
		return nil, fmt.Errorf("console: public URL: %w", err)
	}
	acsURL, _ := url.Parse(publicURL + "/auth/saml/acs")
	sp := &saml.ServiceProvider{
		EntityID: o.EntityID, Key: o.Key, Certificate: o.Certificate, MetadataURL: *metadataURL, AcsURL: *acsURL,
		IDPMetadata: o.IDPMetadata, SignatureMethod: method,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		// The IdP chooses the NameID's format; the request asks for none in particular.
		AuthnNameIDFormat: saml.UnspecifiedNameIDFormat,
		// The metadata says how long to cache it rather than a validUntil two days ahead,
		// which an IdP that imported the file once would hold against it later.
		MetadataOmitValidUntil: true,
		AllowIDPInitiated:      false,
		RejectSHA1Signatures:   true,
	}
	if sp.GetSSOBindingLocation(saml.HTTPRedirectBinding) == "" {
		return nil, fmt.Errorf("console: the SAML identity provider %s has no single sign-on service with the HTTP-Redirect binding in its metadata", o.IDPMetadata.EntityID)
	}
	if !hasSigningCertificate(o.IDPMetadata) {
		return nil, fmt.Errorf("console: the SAML identity provider %s has no signing certificate in its metadata", o.IDPMetadata.EntityID)
	}
	setSAMLClockSkew(o.MaxClockSkew)
	return &samlLogin{c: c, opts: o, sp: sp}, nil
}

// setSAMLClockSkew sets crewjam/saml's time limits, which are package variables (one console
// per process, so one setting): an assertion's NotBefore and NotOnOrAfter are allowed skew,
// and its IssueInstant may be skew plus a minute old (the minute for the answer to travel
// through the browser). They are written only when they change, so that consoles made with
// the same setting (tests) do not race with one checking a response.
func setSAMLClockSkew(skew time.Duration) {
	if saml.MaxClockSkew != skew {
		saml.MaxClockSkew = skew
	}
	if d := skew + time.Minute; saml.MaxIssueDelay != d {
		saml.MaxIssueDelay = d
	}
}

func (l *samlLogin) register(g *echo.Group) {
	g.GET("/auth/saml/metadata", l.metadata)
	g.GET("/auth/saml/login", l.start)
	g.POST("/auth/saml/acs", l.acs)
}

// metadata is the service provider's metadata: its entity ID, the ACS (HTTP-POST), the
// certificate its requests are signed with and assertions may be encrypted to.
func (l *samlLogin) metadata(ctx echo.Context) error {
	b, err := xml.MarshalIndent(l.sp.Metadata(), "", "  ")
	if err != nil {
		return err
	}
	ctx.Response().Header().Set("Cache-Control", "no-store")
	return ctx.Blob(http.StatusOK, "application/samlmetadata+xml", append([]byte(xml.Header), b...))
}

// start sends the browser to the identity provider with a signed AuthnRequest.
func (l *samlLogin) start(ctx echo.Context) error {
	req, err := l.sp.MakeAuthenticationRequest(l.sp.GetSSOBindingLocation(saml.HTTPRedirectBinding), saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		return l.c.errorPage(ctx, http.StatusInternalServerError, "Sign-in failed", "The SAML request could not be made: "+err.Error())
	}
	relay := identity.RandomToken(24)
	to, err := req.Redirect(relay, l.sp)
	if err != nil {
		return l.c.errorPage(ctx, http.StatusInternalServerError, "Sign-in failed", "The SAML request could not be signed: "+err.Error())
	}
	// The IdP's answer comes back as a cross-site POST, which carries no Lax cookie: the
	// binding cookie is SameSite=None, so Secure — which browsers also accept from a
	// loopback console over plain http (a Chromium test signs in that way).
	if err := l.c.startSignIn(ctx, "saml", relay, http.SameSiteNoneMode, &pendingSAML{RequestID: req.ID}); err != nil {
		return l.c.unavailable(ctx, "Sign-in failed", err)
	}
	return ctx.Redirect(http.StatusSeeOther, to.String())
}

// acs takes the identity provider's Response.
func (l *samlLogin) acs(ctx echo.Context) error {
	r := ctx.Request()
	r.Body = http.MaxBytesReader(ctx.Response(), r.Body, maxSAMLResponseBytes)
	if err := r.ParseForm(); err != nil {
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", "The answer from the identity provider could not be read (not a form, or larger than 1 MiB).")
	}
	f := r.PostForm
	switch {
	case f.Has("SAMLart") || f.Has("SigAlg") || f.Has("Signature"):
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused",
			"The identity provider used a SAML binding this console does not accept: it takes the HTTP-POST binding only (no artifact, no SimpleSign).")
	case f.Get("SAMLResponse") == "":
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", "The answer from the identity provider has no SAMLResponse.")
	}
	relay := f.Get("RelayState")
	if relay == "" || len(relay) > 256 {
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused",
			"This SAML response was not asked for by this console (it has no RelayState): sign-ins started at the identity provider are not accepted. Start from the console's sign-in page.")
	}
	var p pendingSAML
	if ok, done := l.c.takeSignIn(ctx, "saml", relay, &p,
		"This SAML response does not belong to a sign-in started here, or was already used (unknown or replayed RelayState). Start again."); !ok {
		return done
	}
	sp, signed := l.forResponse(r.Context())
	a, err := sp.ParseResponse(r, []string{p.RequestID})
	if err != nil {
		return l.refuse(ctx, err)
	}
	// crewjam accepts an unsigned assertion inside a signed Response. The console does not:
	// the assertion is what is kept and trusted, so it must carry the IdP's own signature.
	if !slices.Contains(signed.ids, a.ID) {
		l.c.opts.Log.Warn("saml response refused", "reason", "assertion not signed", "idp", l.opts.IDPMetadata.EntityID)
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in refused", unsignedAssertion)
	}
	id, expiry, refusal := l.identity(a)
	if refusal != "" {
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in refused", refusal)
	}
	return l.c.startSession(ctx, id, "saml", expiry, p.Next)
}

const unsignedAssertion = "The assertion in the SAML response is not signed by the identity provider (a signed response around an unsigned assertion is not enough). Set the identity provider to sign assertions."

// forResponse is the service provider for checking one response: it records the assertions
// whose own signature verified, and refuses an assertion whose ID it has seen before.
func (l *samlLogin) forResponse(ctx context.Context) (*saml.ServiceProvider, *signedAssertions) {
	sp := *l.sp
	signed := &signedAssertions{}
	sp.SignatureVerifier = signed
	sp.ReplayCache = onceCache{ctx: ctx, sessions: l.c.opts.Sessions, idp: l.opts.IDPMetadata.EntityID}
	return &sp, signed
}

// refuse is the error page for a response crewjam refused: what was wrong, in words, never
// the response itself.
func (l *samlLogin) refuse(ctx echo.Context, err error) error {
	detail := err.Error()
	var ivr *saml.InvalidResponseError
	if errors.As(err, &ivr) && ivr.PrivateErr != nil {
		detail = ivr.PrivateErr.Error()
	}
	l.c.opts.Log.Warn("saml response refused", "idp", l.opts.IDPMetadata.EntityID, "err", truncate(detail, 300))
	skew := l.opts.MaxClockSkew
	var bad saml.ErrBadStatus
	status, msg := http.StatusUnauthorized, "The SAML response was refused: "+truncate(detail, 200)+"."
	switch {
	case errors.Is(err, saml.ErrAssertionReplayed):
		status, msg = http.StatusBadRequest, "This assertion was already used to sign in (a replayed SAML response). Start again."
	case errors.Is(err, saml.ErrRequestIDMismatch):
		status, msg = http.StatusBadRequest, "The SAML response does not answer the sign-in request this browser started (its InResponseTo does not match): unsolicited responses are not accepted. Start again."
	case strings.Contains(detail, "signature element not present"): // crewjam's errSignatureElementNotPresent is not exported
		msg = unsignedAssertion
	case errors.Is(err, saml.ErrInvalidSignature), errors.Is(err, saml.ErrUntrustedCertificate), errors.Is(err, saml.ErrCertificateNotValidNow):
		msg = "The signature on the SAML response does not verify with the identity provider's certificate from its metadata (forged, or signed with another key). If the identity provider changed its key, update its metadata in console.saml."
	case errors.Is(err, saml.ErrAudienceMismatch):
		msg = fmt.Sprintf("The assertion is for another service provider: its audience is not %s.", l.opts.EntityID)
	case errors.Is(err, saml.ErrDestinationMismatch):
		msg = fmt.Sprintf("The SAML response is addressed to another place: its Destination or Recipient is not %s.", l.sp.AcsURL.String())
	case errors.Is(err, saml.ErrExpired):
		msg = fmt.Sprintf("The assertion has expired, or the identity provider's clock is more than %s behind this server's. Start again.", skew)
	case errors.Is(err, saml.ErrNotYetValid):
		msg = fmt.Sprintf("The assertion is not valid yet: the identity provider's clock is more than %s ahead of this server's.", skew)
	case errors.Is(err, saml.ErrIssuerMismatch):
		msg = fmt.Sprintf("The SAML response is from another identity provider than %s.", l.opts.IDPMetadata.EntityID)
	case errors.As(err, &bad):
		msg = "The identity provider did not sign you in: it answered " + truncate(bad.Status, 200) + "."
	case errors.Is(err, saml.ErrDecryptionFailed):
		status, msg = http.StatusBadRequest, "The encrypted assertion could not be decrypted with this console's key."
	case errors.Is(err, saml.ErrMalformedMessage), errors.Is(err, saml.ErrMissingElement), errors.Is(err, saml.ErrUnsupported):
		status, msg = http.StatusBadRequest, "The SAML response is malformed or incomplete: "+truncate(detail, 200)+"."
	}
	return l.c.errorPage(ctx, status, "Sign-in refused", msg)
}

// identity is who the assertion says signed in, and until when the IdP vouches for it; or
// why the assertion cannot sign anyone in.
func (l *samlLogin) identity(a *saml.Assertion) (*identity.Identity, time.Time, string) {
	if a.Subject == nil || a.Subject.NameID == nil || a.Subject.NameID.Value == "" {
		return nil, time.Time{}, "The assertion names no one (it has no NameID)."
	}
	sub := a.Subject.NameID.Value
	if len(sub) > 1024 {
		return nil, time.Time{}, "The assertion's NameID is longer than 1024 bytes."
	}
	name := sub
	if v := attributeValues(a, l.opts.NameAttribute); len(v) > 0 && identity.UsableName(v[0]) {
		name = v[0] // a name with control or invisible characters could pass for another's
	}
	var expiry time.Time
	for _, s := range a.AuthnStatements {
		if s.SessionNotOnOrAfter != nil && (expiry.IsZero() || s.SessionNotOnOrAfter.Before(expiry)) {
			expiry = *s.SessionNotOnOrAfter
		}
	}
	if !expiry.IsZero() && !time.Now().Before(expiry) {
		return nil, time.Time{}, fmt.Sprintf("The identity provider's session for %s ended at %s (SessionNotOnOrAfter).", name, expiry.UTC().Format(time.RFC3339))
	}
	id := &identity.Identity{Identity: schemas.Identity{Subject: sub, Name: name, Issuer: l.opts.IDPMetadata.EntityID,
		Groups: attributeValues(a, l.opts.GroupsAttribute), Kind: "human"}, Expiry: expiry}
	return id, expiry, ""
}

// attributeValues are the values of the attributes named name (by Name or FriendlyName),
// without empty values or repeats.
func attributeValues(a *saml.Assertion, name string) []string {
	if name == "" {
		return nil
	}
	var out []string
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			if at.Name != name && at.FriendlyName != name {
				continue
			}
			for _, v := range at.Values {
				if v.Value != "" && !slices.Contains(out, v.Value) {
					out = append(out, v.Value)
				}
			}
		}
	}
	return out
}

// signedAssertions verifies signatures as crewjam does by default (dsig, against the IdP's
// certificates from its metadata) and records the IDs of the assertions whose own signature
// verified: crewjam reads an assertion from what its signature covers, so the assertion it
// returns has one of these IDs exactly when it was signed itself.
type signedAssertions struct{ ids []string }

const samlAssertionNS = "urn:oasis:names:tc:SAML:2.0:assertion"

func (s *signedAssertions) VerifySignature(vc *dsig.ValidationContext, el *etree.Element) error {
	_, err := s.VerifySignedElement(vc, el)
	return err
}

func (s *signedAssertions) VerifySignedElement(vc *dsig.ValidationContext, el *etree.Element) (*etree.Element, error) {
	signed, err := vc.Validate(el)
	if err != nil {
		// Without a certificate in its KeyInfo, dsig finds the key only when it trusts exactly
		// one certificate; an IdP listing several (a key rollover) is tried one at a time, as
		// crewjam's own verification does.
		store, ok := vc.CertificateStore.(*dsig.MemoryX509CertificateStore)
		if !ok || len(store.Roots) < 2 || el.FindElement("./Signature/KeyInfo") != nil {
			return nil, err
		}
		for _, cert := range store.Roots {
			one := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
			one.IdAttribute, one.Clock = vc.IdAttribute, vc.Clock
			if signed, err = one.Validate(el); err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if signed.Tag == "Assertion" && signed.NamespaceURI() == samlAssertionNS {
		s.ids = append(s.ids, signed.SelectAttrValue("ID", ""))
	}
	return signed, nil
}

// onceCache records each assertion's ID with WebSessions.Once, in the store every console
// process shares: an assertion is accepted once, whichever process it is posted to. crewjam
// asks to keep the record until the assertion's last acceptable moment, which is at most
// MaxIssueDelay after its IssueInstant (max_clock_skew + 1m, at most 6 minutes); the store
// keeps it for the pending bucket's TTL (bus.WebPendingTTL, 15 minutes), longer than that.
type onceCache struct {
	ctx      context.Context
	sessions *identity.WebSessions
	idp      string
}

func (o onceCache) Consume(id string, expiresAt time.Time) error {
	first, err := o.sessions.Once(o.ctx, "saml.assertion."+o.idp+"\x00"+id)
	if err != nil {
		return fmt.Errorf("record the assertion: %w", err)
	}
	if !first {
		return saml.ErrAssertionReplayed
	}
	return nil
}
