package query

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// AsciicastOptions are what an asciicast file holds beyond the channel's output.
type AsciicastOptions struct {
	// Title is the header's title.
	Title string
	// Input includes what the client typed (i frames) as "i" events; without it the file
	// holds what the client saw only.
	Input bool
}

// Terminal is a recorded terminal: when it began, the terminal's type and size (empty and
// 0 when the client sent none) and its frames in play order (PlayOrder).
type Terminal struct {
	Opened     time.Time
	Term       string
	Cols, Rows uint32
	Frames     []schemas.TermFrame
}

// Recording is what has a recorded terminal: an SSH channel, a Kubernetes exec.
type Recording interface {
	Terminal() Terminal
}

// Asciicast's defaults for a channel without a pty-req (an exec): the size asciinema
// players assume.
const (
	asciicastCols = 80
	asciicastRows = 24
)

// WriteAsciicast writes a recorded terminal (an SSH channel's, a Kubernetes exec's) as an
// asciicast v2 file (https://docs.asciinema.org/manual/asciicast/v2/): a header line with
// its size and terminal (an SSH channel's pty-req) and the time it began, then one
// [seconds, code, data] line per frame in play order. Output and stderr are both "o" (the
// client's terminal showed them as one stream), resizes "r" with COLSxROWS, input "i"
// with opt.Input.
func WriteAsciicast(w io.Writer, r Recording, opt AsciicastOptions) error {
	c := r.Terminal()
	bw := bufio.NewWriter(w)
	cols, rows := c.Cols, c.Rows
	if cols == 0 || rows == 0 {
		cols, rows = asciicastCols, asciicastRows
	}
	b := fmt.Appendf(nil, `{"version":2,"width":%d,"height":%d,"timestamp":%d`, cols, rows, c.Opened.Unix())
	if c.Term != "" {
		b = append(b, `,"env":{"TERM":`...)
		b = schemas.AppendJSONString(b, c.Term)
		b = append(b, '}')
	}
	if opt.Title != "" {
		b = append(b, `,"title":`...)
		b = schemas.AppendJSONString(b, opt.Title)
	}
	b = append(b, "}\n"...)
	if _, err := bw.Write(b); err != nil {
		return err
	}
	for _, f := range c.Frames {
		code := f.Code
		switch code {
		case "o", "e":
			code = "o"
		case "r":
			// A resize to no size (a window-change without one) is not a terminal size:
			// players stop on it.
			if cols, rows, ok := strings.Cut(f.Data, "x"); !ok || cols == "0" || rows == "0" {
				continue
			}
		case "i":
			if !opt.Input {
				continue
			}
		default:
			continue
		}
		b = append(b[:0], '[')
		b = appendSeconds(b, f.TUS)
		b = append(b, `,"`...)
		b = append(b, code...)
		b = append(b, `",`...)
		b = schemas.AppendJSONString(b, f.Data)
		b = append(b, "]\n"...)
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// HasOutput says whether the terminal has output to play.
func (t Terminal) HasOutput() bool {
	for _, f := range t.Frames {
		if (f.Code == "o" || f.Code == "e") && f.Data != "" {
			return true
		}
	}
	return false
}

// Output is what the client was sent, in order: the o and e frames.
func (t Terminal) Output() []byte {
	var b []byte
	for _, f := range t.Frames {
		if f.Code == "o" || f.Code == "e" {
			b = append(b, f.Data...)
		}
	}
	return b
}

// Duration is the time of the last frame.
func (t Terminal) Duration() time.Duration {
	if len(t.Frames) == 0 {
		return 0
	}
	return time.Duration(t.Frames[len(t.Frames)-1].TUS) * time.Microsecond
}

// appendSeconds appends microseconds as seconds with six decimals.
func appendSeconds(b []byte, us uint64) []byte {
	b = strconv.AppendUint(b, us/1e6, 10)
	b = append(b, '.')
	frac := strconv.FormatUint(us%1e6, 10)
	for i := len(frac); i < 6; i++ {
		b = append(b, '0')
	}
	return append(b, frac...)
}

// AsciicastTitle is the title the CLI gives a channel's recording: who, where, as whom,
// what ran, when.
func AsciicastTitle(s *SSHSession, c *SSHChannel) string {
	who := s.Identity.Name
	if who == "" {
		who = s.Identity.Subject
	}
	login := ""
	if s.Start != nil && s.Start.Login != "" {
		login = " as " + s.Start.Login
	}
	return fmt.Sprintf("%s on %s%s, channel %s, %s", who, s.Resource, login, c.Describe(), c.Opened.UTC().Format(time.RFC3339))
}
