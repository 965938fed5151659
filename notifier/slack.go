// Package notifier drives approvals from Slack: a Block Kit message per approval in the
// resource's channel with Approve and Deny buttons, updated when the approval is decided,
// expires or is withdrawn; and the interaction endpoint that takes the clicks, verifying
// Slack's request signature and mapping the Slack user to an approver identity. It meets
// the approvals component only over NATS: it folds GH_APPROVALS itself, and records a
// decision with a gh.approvals-decide request, so it runs as its own target.
package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	slackapi "github.com/slack-go/slack"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// Path is where Slack sends interaction callbacks.
const Path = "/slack/interactions"

// maxBody bounds an interaction callback.
const maxBody = 1 << 20

// Notifier posts and updates approval messages and takes decisions from Slack.
type Notifier struct {
	cfg    *config.Slack
	api    *slackapi.Client
	secret string
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger

	queue chan schemas.Approval
	mu    sync.Mutex
	msgs  map[string]msgRef // approval id → its message
	users map[string]config.SlackUser
}

type msgRef struct{ channel, ts string }

// New reads the token and signing secret and makes a notifier of the approvals on js's
// GH_APPROVALS, deciding through nc.
func New(cfg *config.Slack, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) (*Notifier, error) {
	token, err := readSecret(cfg.BotTokenFile)
	if err != nil {
		return nil, fmt.Errorf("slack.bot_token_file: %w", err)
	}
	secret, err := readSecret(cfg.SigningSecretFile)
	if err != nil {
		return nil, fmt.Errorf("slack.signing_secret_file: %w", err)
	}
	var opts []slackapi.Option
	if cfg.APIURL != "" {
		opts = append(opts, slackapi.OptionAPIURL(strings.TrimRight(cfg.APIURL, "/")+"/"))
	}
	n := &Notifier{cfg: cfg, api: slackapi.New(token, opts...), secret: secret, nc: nc, js: js, log: log,
		queue: make(chan schemas.Approval, 1024), msgs: map[string]msgRef{}, users: map[string]config.SlackUser{}}
	for _, u := range cfg.Users {
		n.users[strings.ToLower(u.Email)] = u
	}
	return n, nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Follow folds GH_APPROVALS, from its start, into the approvals' states, and queues each
// change for Slack, until ctx ends. A settled approval is forgotten once queued.
func (n *Notifier) Follow(ctx context.Context) error {
	cc, err := n.js.OrderedConsumer(ctx, bus.StreamApprovals, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("follow %s: %w", bus.StreamApprovals, err)
	}
	state := map[string]*schemas.Approval{}
	consume, err := cc.Consume(func(m jetstream.Msg) {
		var e schemas.Event
		var ids struct {
			ApprovalID string `json:"approval_id"`
			GrantID    string `json:"grant_id"`
		}
		if err := json.Unmarshal(m.Data(), &e); err != nil || json.Unmarshal(e.Payload, &ids) != nil {
			n.log.Warn("unreadable message on GH_APPROVALS; ignored", "subject", m.Subject())
			return
		}
		id := ids.ApprovalID
		if id == "" {
			id = ids.GrantID // a grant's id is its approval's
		}
		a := state[id]
		if a == nil {
			a = &schemas.Approval{}
			state[id] = a
		}
		changed, err := a.Apply(&e)
		if err != nil {
			n.log.Warn("approval event not applied", "approval", id, "err", err)
		}
		if changed && a.ID != "" {
			n.OnChange(a)
		}
		if a.Status != schemas.ApprovalStatusPending {
			delete(state, id) // settled (or never requested): nothing more to show
		}
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", bus.StreamApprovals, err)
	}
	<-ctx.Done()
	consume.Stop()
	return nil
}

// OnChange queues an approval's new state for Slack (it never blocks the stream; if Slack
// is far behind, the oldest updates are the ones dropped).
func (n *Notifier) OnChange(a *schemas.Approval) {
	select {
	case n.queue <- a.Snapshot():
	default:
		n.log.Warn("slack is not keeping up; approval update dropped", "approval", a.ID)
	}
}

// Run posts and updates messages until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case a := <-n.queue:
			n.publish(ctx, &a)
		}
	}
}

func (n *Notifier) channelFor(resource string) string {
	if c, ok := n.cfg.Channels[resource]; ok {
		return c
	}
	return n.cfg.Channel
}

// publish posts the message of a new approval, or updates it.
func (n *Notifier) publish(ctx context.Context, a *schemas.Approval) {
	n.mu.Lock()
	ref, posted := n.msgs[a.ID]
	n.mu.Unlock()
	blocks := slackapi.MsgOptionBlocks(Blocks(a, time.Now())...)
	text := slackapi.MsgOptionText(summary(a), false)
	if !posted {
		if a.Status != schemas.ApprovalStatusPending {
			return // decided before we saw it (a replay): nothing to ask
		}
		ch, ts, err := n.api.PostMessageContext(ctx, n.channelFor(a.Resource), text, blocks)
		if err != nil {
			n.log.Warn("slack: approval not posted", "approval", a.ID, "err", err)
			return
		}
		n.mu.Lock()
		n.msgs[a.ID] = msgRef{ch, ts}
		n.mu.Unlock()
		return
	}
	if _, _, _, err := n.api.UpdateMessageContext(ctx, ref.channel, ref.ts, text, blocks); err != nil {
		n.log.Warn("slack: approval message not updated", "approval", a.ID, "err", err)
	}
	if a.Status != schemas.ApprovalStatusPending {
		n.mu.Lock()
		delete(n.msgs, a.ID)
		n.mu.Unlock()
		n.tellOwner(ctx, a)
	}
}

// tellOwner sends the owner of the requester (if configured) the outcome, directly.
func (n *Notifier) tellOwner(ctx context.Context, a *schemas.Approval) {
	owner, ok := n.cfg.Owners[a.Requester.Subject]
	if !ok && a.Requester.Name != "" {
		owner, ok = n.cfg.Owners[a.Requester.Name]
	}
	if !ok && a.Requester.OnBehalfOf != "" {
		owner, ok = n.cfg.Owners[a.Requester.OnBehalfOf]
	}
	if !ok {
		return
	}
	text := fmt.Sprintf("Gatehouse: the request of %s on %s (approval %s): %s", displayName(&a.Requester), a.Resource, a.ID, Outcome(a))
	if _, _, err := n.api.PostMessageContext(ctx, owner, slackapi.MsgOptionText(text, false)); err != nil {
		n.log.Warn("slack: owner not told", "approval", a.ID, "owner", owner, "err", err)
	}
}

// displayName is how an approver reads an identity: its name (identity.name), else its
// token subject.
func displayName(id *schemas.Identity) string {
	if id.Name != "" {
		return id.Name
	}
	return id.Subject
}

func summary(a *schemas.Approval) string {
	what := "a statement"
	if a.Request.Kind == "grant" {
		what = "the " + a.Request.GrantRole + " role"
	}
	return fmt.Sprintf("%s asks for approval of %s on %s (%s)", displayName(&a.Requester), what, a.Resource, a.Status)
}

// maxStatement bounds the statement shown in a message (Slack's limit on a text block is
// 3000 characters).
const maxStatement = 2500

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + " …"
}

// Blocks is the Block Kit message of an approval in its current state.
func Blocks(a *schemas.Approval, now time.Time) []slackapi.Block {
	who := displayName(&a.Requester)
	if a.Requester.Name != "" && a.Requester.Name != a.Requester.Subject {
		who += " (subject " + a.Requester.Subject + ")"
	}
	if a.Requester.OnBehalfOf != "" {
		who += " (on behalf of " + a.Requester.OnBehalfOf + ")"
	}
	if a.Requester.Kind != "" {
		who += ", " + a.Requester.Kind
	}
	title := "Approval requested: statement on " + a.Resource
	var body string
	if a.Request.Kind == "grant" {
		title = "Grant requested: " + a.Request.GrantRole + " on " + a.Resource
		body = fmt.Sprintf("*Role* `%s` for %s", a.Request.GrantRole, time.Duration(a.Request.GrantSeconds)*time.Second)
	} else {
		// Backticks would end the code block early.
		stmt := strings.ReplaceAll(truncate(schemas.Printable(a.Request.Statement), maxStatement), "```", "ʼʼʼ")
		body = "```" + stmt + "```"
	}
	fields := []*slackapi.TextBlockObject{
		// Names and subjects come from the IdP's claims: escaped, so that one spelled
		// <!channel> or <https://x|y> is shown, not acted on.
		md("*Requested by*\n" + mrkdwnEscaper.Replace(who)),
		md("*Resource*\n" + a.Resource + labels(a.Request.Labels)),
		md(fmt.Sprintf("*Rule*\n%s / %s", a.Request.Policy, a.Request.Rule)),
		md(fmt.Sprintf("*Approvals*\n%d of %d from %s", len(a.Approvals), max(a.Request.Required, 1), strings.Join(a.Request.Approvers, ", "))),
	}
	blocks := []slackapi.Block{
		slackapi.NewHeaderBlock(slackapi.NewTextBlockObject(slackapi.PlainTextType, truncate(title, 140), false, false)),
		slackapi.NewSectionBlock(md(body), nil, nil),
		slackapi.NewSectionBlock(nil, fields, nil),
	}
	if a.Request.Reason != "" {
		blocks = append(blocks, slackapi.NewSectionBlock(md("*Reason*\n"+truncate(a.Request.Reason, 500)), nil, nil))
	}
	switch a.Status {
	case schemas.ApprovalStatusPending:
		blocks = append(blocks, slackapi.NewContextBlock("", md(fmt.Sprintf("Deadline %s (in %s) · approval `%s`", a.Request.Deadline.UTC().Format(time.RFC3339),
			a.Request.Deadline.Sub(now).Round(time.Second), a.ID))))
		approve := slackapi.NewButtonBlockElement("approve", a.ID, slackapi.NewTextBlockObject(slackapi.PlainTextType, "Approve", false, false))
		approve.Style = slackapi.StylePrimary
		deny := slackapi.NewButtonBlockElement("deny", a.ID, slackapi.NewTextBlockObject(slackapi.PlainTextType, "Deny", false, false))
		deny.Style = slackapi.StyleDanger
		blocks = append(blocks, slackapi.NewActionBlock("decision", approve, deny))
	default:
		blocks = append(blocks, slackapi.NewContextBlock("", md(Outcome(a))))
	}
	return blocks
}

// Outcome is the line that replaces the buttons once an approval is settled.
func Outcome(a *schemas.Approval) string {
	at := a.DecidedAt.UTC().Format(time.RFC3339)
	switch a.Status {
	case schemas.ApprovalStatusApproved:
		return fmt.Sprintf(":white_check_mark: Approved by %s at %s", strings.Join(a.ApprovedBy(), ", "), at)
	case schemas.ApprovalStatusDenied:
		return fmt.Sprintf(":no_entry: Denied by %s at %s: %s", a.Denial.By, at, a.Denial.Reason)
	case schemas.ApprovalStatusExpired:
		return fmt.Sprintf(":hourglass: Expired at %s, undecided", at)
	case schemas.ApprovalStatusCancelled:
		return fmt.Sprintf(":leftwards_arrow_with_hook: Withdrawn by the requester at %s (%s)", at, a.Closed)
	}
	return a.Status
}

// mrkdwnEscaper escapes the three characters Slack's mrkdwn gives a meaning to.
var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func md(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, s, false, false)
}

func labels(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return " (" + strings.Join(l, ", ") + ")"
}

// Register adds the interaction endpoint.
func (n *Notifier) Register(e *echo.Echo) { e.POST(Path, n.interaction) }

// interaction takes a click or a modal submission. Anything not signed by Slack within
// five minutes is refused; the answer comes within Slack's three seconds (decisions are
// recorded after the answer).
func (n *Notifier) interaction(c echo.Context) error {
	r := c.Request()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return echo.NewHTTPError(http.StatusBadRequest, "unreadable or oversized body")
	}
	sv, err := slackapi.NewSecretsVerifier(r.Header, n.secret)
	if err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "not signed by Slack: "+err.Error())
	}
	if _, err := sv.Write(body); err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "not signed by Slack")
	}
	if err := sv.Ensure(); err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "bad Slack signature")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body is not a form")
	}
	var cb slackapi.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "payload: "+err.Error())
	}
	switch cb.Type {
	case slackapi.InteractionTypeBlockActions:
		if len(cb.ActionCallback.BlockActions) == 0 {
			return c.NoContent(http.StatusOK)
		}
		act := cb.ActionCallback.BlockActions[0]
		switch act.ActionID {
		case "approve":
			go n.decide(cb.Channel.ID, cb.User.ID, act.Value, "approve", "")
		case "deny":
			// The modal must open within the trigger's three seconds: now.
			if _, err := n.api.OpenViewContext(r.Context(), cb.TriggerID, denyModal(act.Value, cb.Channel.ID)); err != nil {
				n.log.Warn("slack: deny dialog not opened", "err", err)
			}
		}
		return c.NoContent(http.StatusOK)
	case slackapi.InteractionTypeViewSubmission:
		id, channel, _ := strings.Cut(cb.View.PrivateMetadata, "|")
		reason := strings.TrimSpace(cb.View.State.Values["reason"]["reason"].Value)
		if reason == "" {
			return c.JSON(http.StatusOK, map[string]any{"response_action": "errors", "errors": map[string]string{"reason": "a denial needs a reason"}})
		}
		go n.decide(channel, cb.User.ID, id, "deny", reason)
		return c.NoContent(http.StatusOK)
	}
	return c.NoContent(http.StatusOK)
}

func denyModal(approvalID, channel string) slackapi.ModalViewRequest {
	input := slackapi.NewPlainTextInputBlockElement(slackapi.NewTextBlockObject(slackapi.PlainTextType, "Why not?", false, false), "reason")
	return slackapi.ModalViewRequest{
		Type:            slackapi.VTModal,
		Title:           slackapi.NewTextBlockObject(slackapi.PlainTextType, "Deny approval", false, false),
		Submit:          slackapi.NewTextBlockObject(slackapi.PlainTextType, "Deny", false, false),
		Close:           slackapi.NewTextBlockObject(slackapi.PlainTextType, "Cancel", false, false),
		PrivateMetadata: approvalID + "|" + channel,
		Blocks: slackapi.Blocks{BlockSet: []slackapi.Block{
			slackapi.NewInputBlock("reason", slackapi.NewTextBlockObject(slackapi.PlainTextType, "Reason", false, false), nil, input),
		}},
	}
}

// decide maps the Slack user to an identity and records the decision; a refusal is told to
// the user alone.
func (n *Notifier) decide(channel, userID, approvalID, decision, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	who, err := n.identity(ctx, userID)
	if err == nil {
		err = n.record(ctx, schemas.ApprovalDecision{ApprovalID: approvalID, By: who, Decision: decision, Via: "slack", Reason: reason})
	}
	if err != nil {
		n.log.Info("slack decision refused", "approval", approvalID, "user", userID, "err", err)
		if _, perr := n.api.PostEphemeralContext(ctx, channel, userID, slackapi.MsgOptionText("Gatehouse: "+err.Error(), false)); perr != nil {
			n.log.Warn("slack: explanation not sent", "err", perr)
		}
	}
}

// record asks the approvals component to record a decision (gh.approvals-decide).
func (n *Notifier) record(ctx context.Context, d schemas.ApprovalDecision) error {
	b, err := json.Marshal(&d)
	if err != nil {
		return err
	}
	m, err := n.nc.RequestWithContext(ctx, schemas.SubjectApprovalDecide, b)
	if err != nil {
		return fmt.Errorf("the approvals service did not take the decision: %w", err)
	}
	var reply schemas.ApprovalDecisionReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return fmt.Errorf("the approvals service sent an unreadable answer: %w", err)
	}
	if reply.Error != "" {
		return errors.New(reply.Error)
	}
	return nil
}

// identity maps a Slack user to an approver identity: users.info gives the email (also its
// name), the config gives the subject and groups.
func (n *Notifier) identity(ctx context.Context, userID string) (schemas.Identity, error) {
	u, err := n.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return schemas.Identity{}, fmt.Errorf("cannot look up Slack user %s: %w", userID, err)
	}
	email := strings.ToLower(u.Profile.Email)
	m, ok := n.users[email]
	if email == "" || !ok {
		return schemas.Identity{}, fmt.Errorf("Slack user %s (%s) is not a known approver", u.Name, email)
	}
	return schemas.Identity{Subject: m.Subject, Name: email, Groups: m.Groups, Kind: "human", Issuer: "slack"}, nil
}
