package query

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/auditstore"
)

// TerminalRecording is one recorded terminal of a session: an SSH channel with terminal
// output, or a Kubernetes exec or attach.
type TerminalRecording struct {
	// Channel names it: the SSH channel's number, or the Kubernetes exec's request number
	// (query_id), as the CLI's --channel does.
	Channel uint64 `json:"channel"`
	// Kind is ssh or kubernetes.
	Kind string `json:"kind"`
	// Title is the asciicast file's title (AsciicastTitle, KubeAsciicastTitle).
	Title string `json:"title"`
	// Description is the channel or request in a few words, as the CLI names it.
	Description string `json:"description"`
	// Command is what ran: an SSH exec's command line, "shell", "subsystem NAME"; a
	// Kubernetes exec's command, its words joined by spaces (empty for an attach).
	Command string    `json:"command,omitempty"`
	Start   time.Time `json:"start"`
	// DurationSeconds is the time of the last frame; Frames how many there are.
	DurationSeconds float64 `json:"duration_seconds"`
	Frames          int     `json:"frames"`
	// Cols and Rows are the terminal's size, when the client sent one (0 otherwise).
	Cols uint32 `json:"cols,omitempty"`
	Rows uint32 `json:"rows,omitempty"`
	// Input says whether what the client typed was recorded (asciicast input=1 adds it).
	Input bool `json:"input"`

	rec Recording
}

// Recording is the recorded terminal itself, for WriteAsciicast.
func (t *TerminalRecording) Recording() Recording { return t.rec }

// TerminalsOf lists the recorded terminals of a session's events (in sequence order): its
// SSH channels with terminal output, or its Kubernetes execs and attaches with output, in
// channel or request order. A session of another protocol has none.
func TerminalsOf(events []schemas.Event) []TerminalRecording {
	out := []TerminalRecording{}
	switch {
	case IsSSH(events):
		s := SSHSessionOf(events)
		for _, c := range s.Channels {
			if !c.HasOutput() {
				continue
			}
			t := terminalRecording(uint64(c.Number), "ssh", AsciicastTitle(s, c), c.Describe(), c)
			if p := c.Program; p != nil {
				switch p.Request.Request {
				case "exec":
					t.Command = p.Request.Command
				case "subsystem":
					t.Command = "subsystem " + p.Request.Subsystem
				default:
					t.Command = p.Request.Request
				}
			}
			out = append(out, t)
		}
	case IsHTTP(events):
		s := HTTPSessionOf(events)
		for _, r := range s.Requests {
			if !r.HasOutput() {
				continue
			}
			t := terminalRecording(r.Request.QueryID, "kubernetes", KubeAsciicastTitle(s, r), r.Describe(), r)
			if k := r.Request.Kube; k != nil {
				t.Command = strings.Join(k.Command, " ")
			}
			out = append(out, t)
		}
	}
	return out
}

func terminalRecording(channel uint64, kind, title, desc string, r Recording) TerminalRecording {
	term := r.Terminal()
	t := TerminalRecording{Channel: channel, Kind: kind, Title: title, Description: desc, Start: term.Opened.UTC(),
		DurationSeconds: term.Duration().Seconds(), Frames: len(term.Frames), Cols: term.Cols, Rows: term.Rows, rec: r}
	for _, f := range term.Frames {
		if f.Code == "i" {
			t.Input = true
			break
		}
	}
	return t
}

// terminalTypes are the events a session's terminals are built from: its head, SSH
// channels and their requests, HTTP requests and Kubernetes exec streams.
const terminalTypes = `('session.start', 'session.end', 'session.terminated', 'ssh.request', 'ssh.io', 'ssh.exit', 'ssh.file', 'http.request', 'kube.io')`

// terminalEvents reads the events of a session that its terminals are built from, in
// sequence order, a row stored twice once. found is false when the store has no event of
// the session at all.
func (a *API) terminalEvents(c echo.Context, id string) (events []schemas.Event, found bool, err error) {
	ctx := c.Request().Context()
	// The first stored row of each key (see auditstore.ReadSession), chosen before the type
	// is: a later row under a taken key cannot slip a terminal event in.
	rows, err := a.ch.Query(ctx, `SELECT `+auditstore.Columns+` FROM (SELECT `+auditstore.Columns+` FROM `+a.db+`.events WHERE session_id = ?
		ORDER BY seq, id, stream_seq LIMIT 1 BY seq, id) WHERE type IN `+terminalTypes+` ORDER BY seq, id`, id)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var e schemas.Event
		if err := auditstore.ScanEvent(rows, &e); err != nil {
			return nil, false, err
		}
		if n := len(events); n > 0 && events[n-1].ID == e.ID && events[n-1].Seq == e.Seq {
			continue
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(events) > 0 {
		return events, true, nil
	}
	var n uint64
	if err := a.ch.QueryRow(ctx, "SELECT count() FROM "+a.db+".events WHERE session_id = ?", id).Scan(&n); err != nil {
		return nil, false, err
	}
	return nil, n > 0, nil
}

func noSession(id string) error {
	return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no session %q (events may take a few seconds to arrive)", id))
}

// terminals answers GET /api/v1/sessions/:id/terminals: the session's recorded terminals
// (TerminalsOf), so that a page knows which asciicast files it can ask for.
func (a *API) terminals(c echo.Context) error {
	id := c.Param("id")
	events, found, err := a.terminalEvents(c, id)
	if err != nil {
		return a.storeError(err)
	}
	if !found {
		return noSession(id)
	}
	return c.JSON(http.StatusOK, map[string]any{"session_id": id, "terminals": TerminalsOf(events)})
}

// MIMEAsciicast is the media type of an asciicast file.
const MIMEAsciicast = "application/x-asciicast"

// asciicast answers GET /api/v1/sessions/:id/asciicast?channel=N[&input=1]: one recorded
// terminal as asciicast v2, the same bytes `gatehouse sessions replay ID --asciicast FILE
// --channel N [--input]` writes.
func (a *API) asciicast(c echo.Context) error {
	id := c.Param("id")
	v := c.QueryParam("channel")
	channel, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("channel: %q is not a channel number (GET /api/v1/sessions/%s/terminals lists them)", v, id))
	}
	input := false
	if v := c.QueryParam("input"); v != "" {
		if input, err = strconv.ParseBool(v); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("input: %q is not 1 or 0", v))
		}
	}
	events, found, err := a.terminalEvents(c, id)
	if err != nil {
		return a.storeError(err)
	}
	if !found {
		return noSession(id)
	}
	ts := TerminalsOf(events)
	var names []string
	for i := range ts {
		if ts[i].Channel != channel {
			names = append(names, strconv.FormatUint(ts[i].Channel, 10))
			continue
		}
		w := c.Response()
		w.Header().Set(echo.HeaderContentType, MIMEAsciicast)
		w.Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`inline; filename="%s-%d.cast"`, safeFileName(id), channel))
		w.WriteHeader(http.StatusOK)
		if err := WriteAsciicast(w, ts[i].rec, AsciicastOptions{Title: ts[i].Title, Input: input}); err != nil {
			a.log.Warn("asciicast: writing the response failed", "session", id, "err", err)
		}
		return nil
	}
	with := "none"
	if len(names) > 0 {
		with = strings.Join(names, ", ")
	}
	return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("session %s has no terminal recording on channel %d; channels with one: %s", id, channel, with))
}

// safeFileName keeps letters, digits, '-' and '_' of s (a session ID in a header).
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
}
