package query

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
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

// Asciicast's defaults for a channel without a pty-req (an exec): the size asciinema
// players assume.
const (
	asciicastCols = 80
	asciicastRows = 24
)

// WriteAsciicast writes a channel's terminal as an asciicast v2 file
// (https://docs.asciinema.org/manual/asciicast/v2/): a header line with the size and
// terminal of its pty-req and the time its channel opened, then one [seconds, code, data]
// line per frame in play order. Output and stderr are both "o" (the client's terminal
// showed them as one stream), resizes "r" with COLSxROWS, input "i" with opt.Input.
func WriteAsciicast(w io.Writer, c *SSHChannel, opt AsciicastOptions) error {
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
