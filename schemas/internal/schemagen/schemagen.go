// Package schemagen renders the Go types and the Markdown reference of the event schema
// (events.yaml) and of the other NATS messages (messages.yaml). It is used by `go generate`
// and by the test that keeps the generated files current.
package schemagen

import (
	"bytes"
	"fmt"
	"go/format"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Field is one JSON field of the envelope, a struct or a payload; or, with Include, the
// fields of a shared group in its place.
type Field struct {
	Name      string `yaml:"name"`
	Go        string `yaml:"go"`
	Doc       string `yaml:"doc"`
	OmitEmpty bool   `yaml:"omitempty"`
	// OmitZero omits a zero value (a zero time.Time); messages only: events' AppendJSON
	// does not render it.
	OmitZero bool `yaml:"omitzero"`
	// GoName overrides the Go name derived from Name (sqlstate: SQLState).
	GoName string `yaml:"goname"`
	// Include names a group of messages.yaml's shared section: its fields, inline.
	Include string `yaml:"include"`
}

// Constant is a named value of the contract: a subject, a header, a limit.
type Constant struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"` // a Go expression
	Doc   string `yaml:"doc"`   // the Go comment, starting with the name
}

// Struct is a named helper type used by payloads.
type Struct struct {
	Doc    string  `yaml:"doc"`
	Fields []Field `yaml:"fields"`
}

// Type is one event type.
type Type struct {
	Name    string  `yaml:"name"`
	Code    string  `yaml:"code"`
	Doc     string  `yaml:"doc"`
	Payload []Field `yaml:"payload"`
}

// Schema is the whole of events.yaml, or of messages.yaml.
type Schema struct {
	Envelope []Field           `yaml:"envelope"`
	Structs  map[string]Struct `yaml:"structs"`
	Types    []Type            `yaml:"types"`
	// Shared are groups of fields that several types hold (the decision reply and the
	// decision event), defined once and included by name.
	Shared    map[string][]Field `yaml:"shared"`
	Constants []Constant         `yaml:"constants"`
}

// Load parses events.yaml and messages.yaml and expands every include from either's shared
// groups.
func Load(events, messages []byte) (ev, msg *Schema, err error) {
	if ev, err = Parse(events); err != nil {
		return nil, nil, fmt.Errorf("events.yaml: %w", err)
	}
	if msg, err = Parse(messages); err != nil {
		return nil, nil, fmt.Errorf("messages.yaml: %w", err)
	}
	shared := map[string][]Field{}
	for _, s := range []*Schema{ev, msg} {
		for n, fs := range s.Shared {
			if _, dup := shared[n]; dup {
				return nil, nil, fmt.Errorf("shared group %q defined twice", n)
			}
			shared[n] = fs
		}
	}
	for _, s := range []*Schema{ev, msg} {
		if s.Envelope, err = expand(s.Envelope, shared); err != nil {
			return nil, nil, err
		}
		for n, st := range s.Structs {
			if st.Fields, err = expand(st.Fields, shared); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", n, err)
			}
			s.Structs[n] = st
		}
		for i := range s.Types {
			if s.Types[i].Payload, err = expand(s.Types[i].Payload, shared); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", s.Types[i].Name, err)
			}
		}
	}
	return ev, msg, nil
}

// expand replaces each include by the fields of its group.
func expand(fields []Field, shared map[string][]Field) ([]Field, error) {
	var out []Field
	for _, f := range fields {
		if f.Include == "" {
			out = append(out, f)
			continue
		}
		g, ok := shared[f.Include]
		if !ok {
			return nil, fmt.Errorf("include of unknown shared group %q", f.Include)
		}
		out = append(out, g...)
	}
	return out, nil
}

// Parse reads and checks a schema.
func Parse(src []byte) (*Schema, error) {
	var s Schema
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	names, codes := map[string]bool{}, map[string]bool{}
	for i, t := range s.Types {
		switch {
		case t.Name == "" || t.Code == "" || t.Doc == "":
			return nil, fmt.Errorf("types[%d]: name, code and doc are required", i)
		case names[t.Name]:
			return nil, fmt.Errorf("types[%d]: duplicate type %q", i, t.Name)
		case codes[t.Code]:
			return nil, fmt.Errorf("types[%d]: duplicate code %q", i, t.Code)
		}
		names[t.Name], codes[t.Code] = true, true
	}
	return &s, nil
}

var initialisms = map[string]string{"id": "ID", "sql": "SQL", "us": "US", "oid": "OID", "tls": "TLS", "pid": "PID", "url": "URL"}

// GoName turns a snake_case or dotted name into an exported Go identifier.
func GoName(s string) string {
	var b strings.Builder
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == '_' || r == '.' }) {
		if up, ok := initialisms[p]; ok {
			b.WriteString(up)
			continue
		}
		b.WriteString(strings.ToUpper(p[:1]) + p[1:])
	}
	return b.String()
}

// goName is a field's Go name.
func (f *Field) goName() string {
	if f.GoName != "" {
		return f.GoName
	}
	return GoName(f.Name)
}

func writeFields(b *bytes.Buffer, fields []Field) {
	for _, f := range fields {
		tag := f.Name
		if f.OmitEmpty {
			tag += ",omitempty"
		}
		if f.OmitZero {
			tag += ",omitzero"
		}
		fmt.Fprintf(b, "\t// %s is %s.\n\t%s %s `json:%q`\n", f.goName(), f.Doc, f.goName(), f.Go, tag)
	}
}

// RenderGo renders events_gen.go.
func RenderGo(s *Schema) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by cmd/schemagen from events.yaml. DO NOT EDIT.\n\npackage schemas\n\n")
	b.WriteString("import (\n\t\"encoding/json\"\n\t\"strconv\"\n\t\"time\"\n)\n\n")
	b.WriteString("// Event is the envelope every Gatehouse event shares.\ntype Event struct {\n")
	writeFields(&b, s.Envelope)
	b.WriteString("}\n\n")
	if err := writeAppend(&b, "Event", s.Envelope); err != nil {
		return nil, err
	}
	structNames := make([]string, 0, len(s.Structs))
	for n := range s.Structs {
		structNames = append(structNames, n)
	}
	sort.Strings(structNames)
	for _, n := range structNames {
		st := s.Structs[n]
		fmt.Fprintf(&b, "// %s\ntype %s struct {\n", st.Doc, n)
		writeFields(&b, st.Fields)
		b.WriteString("}\n\n")
		if err := writeAppend(&b, n, st.Fields); err != nil {
			return nil, err
		}
	}
	b.WriteString("// Event types.\nconst (\n")
	for _, t := range s.Types {
		fmt.Fprintf(&b, "\t// Type%s: %s\n\tType%s = %q\n", GoName(t.Name), t.Doc, GoName(t.Name), t.Name)
	}
	b.WriteString(")\n\n// Event codes, one per type.\nconst (\n")
	for _, t := range s.Types {
		fmt.Fprintf(&b, "\t// Code%s is the code of %s.\n\tCode%s = %q\n", GoName(t.Name), t.Name, GoName(t.Name), t.Code)
	}
	b.WriteString(")\n\n// Codes maps every event type to its code.\nvar Codes = map[string]string{\n")
	for _, t := range s.Types {
		fmt.Fprintf(&b, "\tType%s: Code%s,\n", GoName(t.Name), GoName(t.Name))
	}
	b.WriteString("}\n\n// NewPayload returns an empty payload of the given event type.\nfunc NewPayload(typ string) (Payload, bool) {\n\tswitch typ {\n")
	for _, t := range s.Types {
		fmt.Fprintf(&b, "\tcase Type%s:\n\t\treturn &%s{}, true\n", GoName(t.Name), GoName(t.Name))
	}
	b.WriteString("\t}\n\treturn nil, false\n}\n\n")
	for _, t := range s.Types {
		n := GoName(t.Name)
		fmt.Fprintf(&b, "// %s is the payload of %s events: %s\ntype %s struct {\n", n, t.Name, lowerFirst(t.Doc), n)
		writeFields(&b, t.Payload)
		fmt.Fprintf(&b, "}\n\n// EventType returns %q.\nfunc (%s) EventType() string { return Type%s }\n\n", t.Name, n, n)
		if err := writeAppend(&b, n, t.Payload); err != nil {
			return nil, err
		}
	}
	return format.Source(b.Bytes())
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// RenderMarkdown renders EVENTS.md.
func RenderMarkdown(s *Schema) []byte {
	var b bytes.Buffer
	b.WriteString("<!-- Generated by cmd/schemagen from events.yaml. DO NOT EDIT. -->\n# Gatehouse events\n\n")
	b.WriteString("Every event is one JSON object with the envelope below; `payload` depends on `type`.\n")
	b.WriteString("Events are published to JetStream stream `GH_AUDIT`. A message holds one event, on subject\n")
	b.WriteString("`gh.audit.<resource>.<session>.<type>` (session.start, session.end and auth.failed always travel alone),\n")
	b.WriteString("or several events of one session in sequence order, one JSON object per line, on subject\n")
	b.WriteString("`gh.audit.<resource>.<session>.batch` (strict mode: a statement with its decision, then its results\n")
	b.WriteString("with its end; buffered mode: the events of the statements within the linger time, `audit.linger`).\n")
	b.WriteString("The message's `Nats-Msg-Id` is its first event's id, so a re-published message is deduplicated (or that id and `~N`, when JetStream kept refusing the id as in process: the store keeps one row of each event either way).\n")
	b.WriteString("A message's data may be compressed: header `Gh-Encoding: s2` says it is one S2 block\n")
	b.WriteString("(github.com/klauspost/compress/s2) holding the lines above; without the header it is the lines\n")
	b.WriteString("themselves. Proxies compress every message of 512 bytes or more; readers decode with\n")
	b.WriteString("`bus.AuditData`, which refuses an unknown encoding and anything decoding to more than 16 MiB.\n\n")
	b.WriteString("## Envelope\n\n| field | type | meaning |\n|---|---|---|\n")
	for _, f := range s.Envelope {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", f.Name, f.Go, f.Doc)
	}
	b.WriteString("\n## Types\n\n| type | code | meaning |\n|---|---|---|\n")
	for _, t := range s.Types {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", t.Name, t.Code, t.Doc)
	}
	for _, t := range s.Types {
		fmt.Fprintf(&b, "\n### `%s` (%s)\n\n%s\n\n| field | type | meaning |\n|---|---|---|\n", t.Name, t.Code, t.Doc)
		for _, f := range t.Payload {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", f.Name, f.Go, f.Doc)
		}
	}
	return b.Bytes()
}

// writeAppend renders an AppendJSON method for a struct: the same bytes as encoding/json's
// Marshal (field order, omitempty, escaping), without reflection. TestAppendJSONMatches
// checks the equivalence.
func writeAppend(b *bytes.Buffer, typ string, fields []Field) error {
	fmt.Fprintf(b, "// AppendJSON appends the JSON encoding of v to b, byte for byte what encoding/json\n// produces.\nfunc (v *%s) AppendJSON(b []byte) []byte {\n", typ)
	if len(fields) == 0 {
		b.WriteString("\treturn append(b, \"{}\"...)\n}\n\n")
		return nil
	}
	b.WriteString("\tb = append(b, '{')\n")
	// sep tracks whether a comma is needed: static until the first omitempty field.
	static := true
	for i, f := range fields {
		name := f.goName()
		val := "v." + name
		key := fmt.Sprintf("%q:", f.Name)
		var empty string
		if f.OmitZero {
			return fmt.Errorf("%s.%s: omitzero is for messages, not events", typ, f.Name)
		}
		if f.OmitEmpty {
			switch {
			case f.Go == "string":
				empty = val + ` == ""`
			case f.Go == "bool":
				empty = "!" + val
			case strings.HasPrefix(f.Go, "[]") || f.Go == "json.RawMessage":
				empty = "len(" + val + ") == 0"
			case strings.HasPrefix(f.Go, "*"):
				empty = val + " == nil"
			case isInt(f.Go):
				empty = val + " == 0"
			default:
				return fmt.Errorf("%s.%s: omitempty not supported for %s", typ, f.Name, f.Go)
			}
		}
		if empty != "" {
			fmt.Fprintf(b, "\tif !(%s) {\n", empty)
		}
		switch {
		case static && i == 0:
			fmt.Fprintf(b, "\tb = append(b, `%s`...)\n", key)
		case static:
			fmt.Fprintf(b, "\tb = append(b, `,%s`...)\n", key)
		default:
			fmt.Fprintf(b, "\tif b[len(b)-1] != '{' {\n\t\tb = append(b, ',')\n\t}\n\tb = append(b, `%s`...)\n", key)
		}
		code, err := appendValue(f.Go, val)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", typ, f.Name, err)
		}
		b.WriteString(code)
		if empty != "" {
			b.WriteString("\t}\n")
			static = false
		}
	}
	b.WriteString("\treturn append(b, '}')\n}\n\n")
	return nil
}

func isInt(t string) bool {
	switch t {
	case "int", "int16", "int32", "int64", "uint16", "uint32", "uint64":
		return true
	}
	return false
}

// appendValue is the code appending the value expression v of Go type t to b.
func appendValue(t, v string) (string, error) {
	switch {
	case t == "string":
		return fmt.Sprintf("\tb = AppendJSONString(b, %s)\n", v), nil
	case t == "bool":
		return fmt.Sprintf("\tb = strconv.AppendBool(b, %s)\n", v), nil
	case strings.HasPrefix(t, "uint"):
		return fmt.Sprintf("\tb = strconv.AppendUint(b, uint64(%s), 10)\n", v), nil
	case strings.HasPrefix(t, "int"):
		return fmt.Sprintf("\tb = strconv.AppendInt(b, int64(%s), 10)\n", v), nil
	case t == "time.Time":
		return fmt.Sprintf("\tb = appendJSONTime(b, %s)\n", v), nil
	case t == "json.RawMessage":
		return fmt.Sprintf("\tb = appendJSONRaw(b, %s)\n", v), nil
	case strings.HasPrefix(t, "[]"):
		elem := t[2:]
		inner, err := appendValue(elem, "e")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("\tif %[1]s == nil {\n\t\tb = append(b, \"null\"...)\n\t} else {\n\t\tb = append(b, '[')\n\t\tfor i, e := range %[1]s {\n\t\t\tif i > 0 {\n\t\t\t\tb = append(b, ',')\n\t\t\t}\n\t%[2]s\t\t}\n\t\tb = append(b, ']')\n\t}\n", v, inner), nil
	case strings.HasPrefix(t, "*"):
		elem := t[1:]
		var inner string
		if elem == "string" {
			inner = fmt.Sprintf("\tb = AppendJSONString(b, *%s)\n", v)
		} else {
			inner = fmt.Sprintf("\tb = %s.AppendJSON(b)\n", v)
		}
		return fmt.Sprintf("\tif %[1]s == nil {\n\t\tb = append(b, \"null\"...)\n\t} else {\n\t%[2]s\t}\n", v, inner), nil
	case t != "" && t[0] >= 'A' && t[0] <= 'Z':
		return fmt.Sprintf("\tb = %s.AppendJSON(b)\n", v), nil
	}
	return "", fmt.Errorf("no JSON encoder for type %s", t)
}
