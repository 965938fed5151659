package jsonmask

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// benchDoc generates about size bytes of customers with cards, addresses and orders.
func benchDoc(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString(`{"customers":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d","email":"user%d@example.com","card_number":"4111 1111 1111 %04d",`+
			`"password":"p%x","active":%t,"balance":%d.%02d,"address":{"street":"%d Main Street","city":"Springfield","zip":"%05d"},`+
			`"tags":["gold","retail","eu"],"orders":[`, i, i, i, r.IntN(10000), r.Uint64(), i%2 == 0, r.IntN(100000), r.IntN(100), r.IntN(999), r.IntN(99999))
		for j := range 3 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"order_id":"ord-%d-%d","amount":%d.%02d,"currency":"EUR","note":"deliver to the back door, ring twice \u00e9"}`,
				i, j, r.IntN(1000), r.IntN(100))
		}
		b.WriteString(`]}`)
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

func BenchmarkWriter(b *testing.B) {
	doc := benchDoc(10 << 20)
	paths := func(ps ...string) []Field { return fields(b, ps...) }
	for _, bc := range []struct {
		name string
		spec *Spec
	}{
		{"passthrough", nil},
		{"detect-none", &Spec{Detect: nothing}},
		{"path", &Spec{Fields: paths("$.customers[*].card_number")}},
		{"paths-deep", &Spec{Fields: paths("$.customers[*].card_number", "$..password", "$.customers[*].address")}},
		{"path+detect", &Spec{Fields: paths("$.customers[*].card_number"), Detect: nothing}},
	} {
		for _, chunk := range []int{32 << 10, len(doc)} {
			b.Run(fmt.Sprintf("%s/chunk=%d", bc.name, chunk), func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				b.ReportAllocs()
				for b.Loop() {
					w := NewWriter(io.Discard, bc.spec)
					for p := doc; len(p) > 0; {
						n := min(chunk, len(p))
						if _, err := w.Write(p[:n]); err != nil {
							b.Fatal(err)
						}
						p = p[n:]
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestBenchDoc(t *testing.T) {
	// the benchmark's document is valid and its paths match
	doc := benchDoc(64 << 10)
	out, counts, err := run(&Spec{Fields: fields(t, "$.customers[*].card_number", "$..password")}, string(doc))
	if err != nil || len(counts) != 2 || !bytes.Contains(doc, []byte("4111")) || bytes.Contains([]byte(out), []byte("4111")) {
		t.Fatalf("err %v counts %v", err, counts)
	}
	checkValidStream(t, out)
}
