package http_test

import (
	"testing"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
)

func TestNormalizePath(t *testing.T) {
	ok := []struct{ raw, decoded, encoded string }{
		{"/", "/", "/"},
		{"/a/b", "/a/b", "/a/b"},
		{"/a//b/", "/a/b/", "/a/b/"},
		{"/a/./b/../c", "/a/c", "/a/c"},
		{"/a/%2e%2e/b", "/b", "/b"},
		{"/a/%2E/b", "/a/b", "/a/b"},
		{"/%61dmin", "/admin", "/admin"},
		{"/caf%C3%A9", "/café", "/caf%C3%A9"},
		{"/a%20b", "/a b", "/a%20b"},
		{"/users/x@y:z", "/users/x@y:z", "/users/x@y:z"},
		{"/a/b/..", "/a", "/a"},
	}
	for _, c := range ok {
		d, e, err := ghttp.NormalizePath(c.raw)
		if err != nil || d != c.decoded || e != c.encoded {
			t.Errorf("NormalizePath(%q) = %q, %q, %v; want %q, %q", c.raw, d, e, err, c.decoded, c.encoded)
		}
	}
	for _, raw := range []string{"", "a", "/..", "/a/../..", "/%2e%2e/x", "/a%2Fb", "/a%5Cb", "/a\\b", "/%252e%252e/admin",
		"/admin;x/", "/admin%3Bx", "/a%00b", "/a%0Ab", "/a%ZZ", "/%ff", "/a#b"} {
		if d, e, err := ghttp.NormalizePath(raw); err == nil {
			t.Errorf("NormalizePath(%q) = %q, %q: want refused", raw, d, e)
		}
	}
}

func TestNormalizeQuery(t *testing.T) {
	v, enc, err := ghttp.NormalizeQuery("b=2&a=1&b=%33&c=x+y")
	if err != nil || enc != "b=2&b=3&a=1&c=x+y" || v.Get("c") != "x y" || len(v["b"]) != 2 {
		t.Fatalf("NormalizeQuery = %v, %q, %v", v, enc, err)
	}
	for _, raw := range []string{"a=1;b=2", "a=%zz", "a=%00", "%ff=1"} {
		if _, _, err := ghttp.NormalizeQuery(raw); err == nil {
			t.Errorf("NormalizeQuery(%q): want refused", raw)
		}
	}
}

func TestFoldKey(t *testing.T) {
	for in, want := range map[string]string{"AMOUNT": "amount", "Amount": "amount", "\u212Aey": "key", "\u017Fum": "sum", "straße": "straße", "ÉTÉ": "été", "Σ": "ς", "σ": "ς"} {
		if got := ghttp.FoldKey(in); got != want {
			t.Errorf("foldKey(%q) = %q, want %q", in, got, want)
		}
	}
}
