package jsonmask_test

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/gatehouse/gatehouse/services/jsonmask"
)

func ExampleWriter() {
	card, err := jsonmask.ParsePath("$.customers[*].card_number")
	if err != nil {
		panic(err)
	}
	spec := &jsonmask.Spec{
		Fields: []jsonmask.Field{{Path: card, Method: jsonmask.Partial}},
		// the caller's masker: here, partial keeps the last four characters
		Mask: func(method string, v []byte) []byte {
			if method == jsonmask.Partial && len(v) > 4 {
				return append(bytes.Repeat([]byte("*"), len(v)-4), v[len(v)-4:]...)
			}
			return []byte(jsonmask.Redacted)
		},
		// the caller's detectors: here, one that finds e-mail addresses' @
		Detect: func(s []byte) ([]byte, int) {
			if n := bytes.Count(s, []byte("@")); n > 0 {
				return []byte("[email]"), n
			}
			return s, 0
		},
	}
	w := jsonmask.NewWriter(os.Stdout, spec)
	// the upstream's body, in whatever pieces it comes
	io.WriteString(w, `{"customers": [{"name": "Ann", "card_number": "4111 1111 1111 1111", "email": "ann@exa`)
	io.WriteString(w, `mple.com"}]}`+"\n")
	if err := w.Close(); err != nil {
		panic(err)
	}
	fmt.Println(w.Masked())
	// Output:
	// {"customers": [{"name": "Ann", "card_number": "***************1111", "email": "[email]"}]}
	// [{$.customers[*].card_number partial 1} {detectors  1}]
}
