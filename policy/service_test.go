package policy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// The body of a decision request keeps its numbers as written: decoded as float64,
// 9007199254740993 would be 9007199254740992.
func TestExactBody(t *testing.T) {
	data := []byte(`{"identity":{"sub":"s"},"resource":{"name":"api","type":"http"},"claims":{"n":1},` +
		`"http":{"method":"POST","path":"/p","body":{"account":9007199254740993,"amount":12.5,"big":18446744073709551615,"items":[{"id":1}],"ok":true,"none":null}}}`)
	var req schemas.DecisionRequest
	require.NoError(t, json.Unmarshal(data, &req))
	body, err := exactBody(data)
	require.NoError(t, err)
	v := jsonValue(body).(map[string]any)
	require.Equal(t, int64(9007199254740993), v["account"])
	require.Equal(t, 12.5, v["amount"])
	require.Equal(t, uint64(18446744073709551615), v["big"])
	require.Equal(t, []any{map[string]any{"id": int64(1)}}, v["items"])
	require.Equal(t, true, v["ok"])
	require.Nil(t, v["none"])
	require.Equal(t, map[string]any{"n": float64(1)}, req.Claims, "claims decode as before")
}
