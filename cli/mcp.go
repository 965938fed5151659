package cli

// `gatehouse mcp`: the gateway's MCP server for an agent on a laptop that speaks MCP over
// stdio (Claude Desktop, an IDE). Each newline-delimited JSON-RPC message read on stdin is
// POSTed to the gateway's streamable HTTP endpoint with the token (--token,
// $GATEHOUSE_TOKEN, else the sign-in of gatehouse login, renewed when due); each message
// of the answer (JSON, or the events of an SSE stream) is written to stdout, one a line.
// Nothing but MCP messages goes to stdout; the bridge's own complaints go to stderr. The
// token is never printed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// mcpMaxMessage bounds one message either way (the gateway bounds requests far below).
const mcpMaxMessage = 4 << 20

func mcpCmd(args []string, stdout, stderr io.Writer) error {
	return mcpBridge(args, os.Stdin, stdout, stderr)
}

func mcpBridge(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("mcp", stdout)
	acc := addAPIFlags(fs, "agent", "")
	path := fs.String("path", "/mcp", "the MCP endpoint's path on the gateway (its mcp.path)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if _, err := acc.client(30 * time.Second); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	b := &bridge{acc: acc, path: *path, out: stdout, errw: stderr, hc: &http.Client{Timeout: 15 * time.Minute}}
	defer b.close()
	r := bufio.NewReaderSize(stdin, 64<<10)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for {
		line, err := readLine(r, mcpMaxMessage)
		if errors.Is(err, errTooLong) {
			b.reply(nil, -32600, fmt.Sprintf("message longer than %d bytes: refused", mcpMaxMessage))
			continue
		}
		if err != nil {
			break // stdin closed: the agent is gone
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var head struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(line, &head) != nil {
			b.reply(nil, -32700, "parse error: not a JSON-RPC message")
			continue
		}
		if head.Method == "initialize" || b.sessionID() == "" {
			// The session starts with initialize: nothing else may overtake it.
			wg.Wait()
			b.send(ctx, line, head.ID)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			b.send(ctx, line, head.ID)
		}()
	}
	wg.Wait()
	return nil
}

var errTooLong = errors.New("line too long")

// readLine reads one line of at most max bytes (a longer one is skipped whole).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errTooLong
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case len(buf) > 0 && errors.Is(err, io.EOF):
			return buf, nil
		default:
			return nil, err
		}
	}
}

type bridge struct {
	acc  *apiAccess
	path string
	hc   *http.Client
	errw io.Writer

	outMu sync.Mutex
	out   io.Writer

	mu      sync.Mutex
	session string
	version string
	base    string
}

func (b *bridge) sessionID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.session
}

// write puts one message on stdout, on a line of its own.
func (b *bridge) write(msg []byte) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	_, _ = b.out.Write(append(bytes.TrimSpace(msg), '\n'))
}

// reply answers a request (id) with an error of the bridge's own; a notification (no id)
// has its trouble told on stderr.
func (b *bridge) reply(id json.RawMessage, code int, msg string) {
	if len(id) == 0 || string(id) == "null" {
		if code == -32700 || code == -32600 {
			id = json.RawMessage("null")
		} else {
			fmt.Fprintln(b.errw, "gatehouse mcp:", msg)
			return
		}
	}
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": code, "message": "gatehouse: " + msg}})
	b.write(out)
}

// send POSTs one message and relays the answer.
func (b *bridge) send(ctx context.Context, msg, id json.RawMessage) {
	api, err := b.acc.client(30 * time.Second) // the sign-in's token, renewed when due
	if err != nil {
		b.reply(id, -32001, err.Error())
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.base+b.path, bytes.NewReader(msg))
	if err != nil {
		b.reply(id, -32603, err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+api.token)
	b.mu.Lock()
	b.base = api.base
	if b.session != "" {
		req.Header.Set("Mcp-Session-Id", b.session)
	}
	if b.version != "" {
		req.Header.Set("Mcp-Protocol-Version", b.version)
	}
	b.mu.Unlock()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.reply(id, -32002, "cannot reach the gateway: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if s := resp.Header.Get("Mcp-Session-Id"); s != "" {
		b.mu.Lock()
		b.session = s
		b.mu.Unlock()
	}
	body := io.LimitReader(resp.Body, 64<<20)
	switch ct := resp.Header.Get("Content-Type"); {
	case resp.StatusCode == http.StatusAccepted:
	case strings.HasPrefix(ct, "text/event-stream") && resp.StatusCode == http.StatusOK:
		b.relaySSE(body)
	case strings.HasPrefix(ct, "application/json"):
		data, _ := io.ReadAll(io.LimitReader(body, mcpMaxMessage))
		if json.Valid(data) && bytes.Contains(data, []byte(`"jsonrpc"`)) {
			b.relay(data)
			return
		}
		b.reply(id, -32003, fmt.Sprintf("the gateway answered %s: %s", resp.Status, printable(strings.TrimSpace(string(data)))))
	default:
		data, _ := io.ReadAll(io.LimitReader(body, 4096))
		msg := fmt.Sprintf("the gateway answered %s: %s", resp.Status, printable(strings.TrimSpace(string(data))))
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (sign in again with gatehouse login, or pass a token for this gateway with --token)"
		}
		b.reply(id, -32003, msg)
	}
}

// relay writes a message from the gateway, remembering the protocol version initialize
// settled on.
func (b *bridge) relay(data []byte) {
	var res struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if json.Unmarshal(data, &res) == nil && res.Result.ProtocolVersion != "" {
		b.mu.Lock()
		b.version = res.Result.ProtocolVersion
		b.mu.Unlock()
	}
	b.write(data)
}

// relaySSE writes each event's data of a server-sent event stream.
func (b *bridge) relaySSE(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), mcpMaxMessage)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				b.relay(data)
				data = nil
			}
		case bytes.HasPrefix(line, []byte("data:")):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
	}
	if len(data) > 0 {
		b.relay(data)
	}
}

// close ends the MCP session on the gateway.
func (b *bridge) close() {
	b.mu.Lock()
	session, base := b.session, b.base
	b.mu.Unlock()
	if session == "" {
		return
	}
	api, err := b.acc.client(10 * time.Second)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, base+b.path, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Mcp-Session-Id", session)
	if resp, err := b.hc.Do(req); err == nil {
		resp.Body.Close()
	}
}
