package query

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/services/seal"
)

// maxVerifySessions bounds one verification request.
const maxVerifySessions = 100000

// Verification is the answer of GET /api/v1/audit/verify.
type Verification struct {
	Sessions int            `json:"sessions"`
	Events   int            `json:"events"`
	Problems []seal.Problem `json:"problems"`
}

// SetVerifyKeys gives the public keys whose seals are accepted, by key id.
func (a *API) SetVerifyKeys(keys map[string]ed25519.PublicKey) { a.keys = keys }

// verify re-reads sessions from ClickHouse and checks their chains and seals:
// ?session=ID, or ?since=RFC3339 (default: the last 24 hours).
func (a *API) verify(c echo.Context) error {
	ctx := c.Request().Context()
	var sessions []string
	if id := c.QueryParam("session"); id != "" {
		sessions = []string{id}
	} else {
		since := time.Now().Add(-24 * time.Hour)
		if s := c.QueryParam("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("since: %q is not an RFC 3339 time", s))
			}
			since = t
		}
		rows, err := a.ch.Query(ctx, "SELECT DISTINCT session_id FROM "+a.db+".events WHERE time_us >= ? LIMIT ?", uint64(since.UnixMicro()), uint64(maxVerifySessions+1))
		if err != nil {
			return a.storeError(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return a.storeError(err)
			}
			sessions = append(sessions, s)
		}
		rows.Close()
		if len(sessions) > maxVerifySessions {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d sessions since %s: verify a shorter range", maxVerifySessions, since.Format(time.RFC3339)))
		}
	}
	v := Verification{Problems: []seal.Problem{}}
	for _, id := range sessions {
		evs, err := ReadSession(ctx, a.ch, a.db, id)
		if err != nil {
			return a.storeError(err)
		}
		if len(evs) == 0 {
			v.Problems = append(v.Problems, seal.Problem{Session: id, Kind: "missing", Detail: "no events for this session"})
			continue
		}
		v.Sessions++
		v.Events += len(evs)
		v.Problems = append(v.Problems, seal.Verify(id, evs, a.keys)...)
	}
	return c.JSON(http.StatusOK, v)
}
