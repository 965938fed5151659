package jsonmask

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Path
	}{
		{"$", nil},
		{"$.customers[*].card_number", Path{{Name: "customers"}, {Any: true}, {Name: "card_number"}}},
		{"$..password", Path{{Name: "password", Deep: true}}},
		{"$.data.*", Path{{Name: "data"}, {Any: true}}},
		{"$.items[*].data.*", Path{{Name: "items"}, {Any: true}, {Name: "data"}, {Any: true}}},
		{"$[0].a", Path{{Index: 0, IsIndex: true}, {Name: "a"}}},
		{"$['weird.key']", Path{{Name: "weird.key"}}},
		{`$["weird.key"]`, Path{{Name: "weird.key"}}},
		{`$['a]b']`, Path{{Name: "a]b"}}},
		{`$['it\'s']`, Path{{Name: "it's"}}},
		{`$['back\\slash']`, Path{{Name: `back\slash`}}},
		{`$['']`, Path{{Name: ""}}},
		{"$[*]", Path{{Any: true}}},
		{"$.*", Path{{Any: true}}},
		{"$..*", Path{{Any: true, Deep: true}}},
		{"$..[*]", Path{{Any: true, Deep: true}}},
		{"$..[3]", Path{{Index: 3, IsIndex: true, Deep: true}}},
		{"$..['a.b']", Path{{Name: "a.b", Deep: true}}},
		{"$.a..b.c", Path{{Name: "a"}, {Name: "b", Deep: true}, {Name: "c"}}},
		{"$.a[12][*]", Path{{Name: "a"}, {Index: 12, IsIndex: true}, {Any: true}}},
		{"$.card-number", Path{{Name: "card-number"}}},
		{"$.名前", Path{{Name: "名前"}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePath(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := ParsePath(got.String())
			require.NoError(t, err, got.String())
			require.Equal(t, got, again, got.String())
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, in := range []string{
		"", "a", "customers", "$.", "$..", "$a", "$.a.", "$.a..", "$...a", "$[", "$[]", "$[*",
		"$[a]", "$[-1]", "$[+1]", "$[1", "$['a'", "$['a]", "$['a'x]", `$['a\x']`, "$.['a']",
		"$.a b", "$.a'b", "$.a]", "$.a*", "$[99999999999]", "$ .a", "$['a']b",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := ParsePath(in)
			require.Error(t, err)
		})
	}
}

func TestPathString(t *testing.T) {
	for in, want := range map[string]string{
		"$.customers[*].card_number": "$.customers[*].card_number",
		"$.data.*":                   "$.data[*]",
		"$..password":                "$..password",
		"$['weird.key']":             "$['weird.key']",
		`$["it's"]`:                  `$['it\'s']`,
		"$..*":                       "$..*",
		"$..[2]":                     "$..[2]",
		"$":                          "$",
	} {
		p, err := ParsePath(in)
		require.NoError(t, err)
		require.Equal(t, want, p.String())
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"$.a[*].b", "$..x", "$['a\\'b']", "$[0]", "$..[*]", "$.*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		again, err := ParsePath(p.String())
		require.NoError(t, err, p.String())
		require.Equal(t, p, again, p.String())
	})
}
