// Files a shell command writes or reads: from a program's arguments (tee, cp, dd, sed -i,
// curl -o, ...) and from redirections, as paths cleaned for the rules.

package policy

import (
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// files records the files a program writes or reads, where its arguments say so.
func (a *shellAnalysis) files(name string, args []shWord) {
	switch name {
	case "tee":
		ops, _ := getopt(args, optSpec{permute: true})
		a.written(ops)
	case "cp", "mv", "install", "ln":
		ops, got := getopt(args, optSpec{withArg: "gmoSt", long: []string{"target-directory", "suffix", "mode", "owner", "group"}, permute: true})
		if _, ok := has(got, "d", "directory"); ok && name == "install" {
			a.written(ops)
			return
		}
		dest := -1
		if t, ok := has(got, "t", "target-directory"); ok {
			a.written([]shWord{t})
		} else if len(ops) >= 2 {
			dest = len(ops) - 1
			a.written(ops[dest:])
		}
		srcs := ops
		if dest >= 0 {
			srcs = ops[:dest]
		}
		switch name {
		case "mv":
			a.written(srcs) // moved away
		case "cp", "install":
			a.read(srcs)
		}
	case "dd":
		for _, w := range args {
			if f, ok := strings.CutPrefix(w.val, "of="); ok {
				a.written([]shWord{{val: f, lit: w.lit}})
			} else if f, ok := strings.CutPrefix(w.val, "if="); ok {
				a.read([]shWord{{val: f, lit: w.lit}})
			}
		}
	case "sed":
		ops, got := getopt(args, optSpec{withArg: "efl", attached: "i", long: []string{"expression", "file", "line-length"}, permute: true})
		if _, ok := has(got, "e", "f", "expression", "file"); !ok && len(ops) > 0 {
			ops = ops[1:]
		}
		if _, ok := has(got, "i", "in-place"); ok {
			a.written(ops)
		} else {
			a.read(ops)
		}
	case "touch", "truncate":
		ops, _ := getopt(args, optSpec{withArg: "dtrs", long: []string{"date", "reference", "time", "size"}, permute: true})
		a.written(ops)
	case "sort":
		_, got := getopt(args, optSpec{withArg: "kotTS", long: []string{"key", "output", "field-separator", "temporary-directory", "buffer-size"}, permute: true})
		if o, ok := has(got, "o", "output"); ok {
			a.written([]shWord{o})
		}
	case "curl", "wget":
		long, short := "output", byte('o')
		if name == "wget" {
			long, short = "output-document", 'O'
		}
		for i, w := range args {
			switch {
			case !w.lit || !strings.HasPrefix(w.val, "-"):
			case w.val == "--"+long && i+1 < len(args):
				a.written(args[i+1 : i+2])
			case strings.HasPrefix(w.val, "--"+long+"="):
				a.written([]shWord{{val: w.val[len(long)+3:], lit: true}})
			case !strings.HasPrefix(w.val, "--"):
				if k := strings.IndexByte(w.val, short); k > 0 && k == len(w.val)-1 && i+1 < len(args) {
					a.written(args[i+1 : i+2])
				} else if k > 0 {
					a.written([]shWord{{val: w.val[k+1:], lit: true}})
				}
			}
		}
	case "cat", "tac", "less", "more", "nl", "head", "tail":
		ops, _ := getopt(args, optSpec{withArg: "nc", long: []string{"lines", "bytes"}, permute: true})
		a.read(ops)
	case "source", ".":
		if len(args) > 0 {
			a.read(args[:1])
		}
	}
}

// fileName is a file as the rules see it: a literal path cleaned (/etc/../etc/passwd is
// /etc/passwd), anything else as written.
func fileName(w shWord) string {
	if w.lit && w.val != "" {
		return path.Clean(w.val)
	}
	return w.val
}

func (a *shellAnalysis) written(ws []shWord) {
	for _, w := range ws {
		if f := fileName(w); f != "" && !slices.Contains(a.info.FilesWritten, f) {
			a.info.FilesWritten = append(a.info.FilesWritten, f)
		}
	}
}

func (a *shellAnalysis) read(ws []shWord) {
	for _, w := range ws {
		if f := fileName(w); f != "" && f != "-" && !slices.Contains(a.info.FilesRead, f) {
			a.info.FilesRead = append(a.info.FilesRead, f)
		}
	}
}

func (a *shellAnalysis) redirect(r *syntax.Redirect, src string) {
	if r.Word == nil {
		return
	}
	w := wordOf(r.Word, src)
	switch r.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.AppClob, syntax.RdrAll, syntax.RdrAllClob, syntax.AppAll, syntax.AppAllClob:
		a.written([]shWord{w})
	case syntax.RdrInOut:
		a.written([]shWord{w})
		a.read([]shWord{w})
	case syntax.RdrIn:
		a.read([]shWord{w})
	case syntax.DplOut:
		// >&2 duplicates a descriptor; >&file (bash) writes a file.
		if w.lit && w.val != "-" && strings.Trim(w.val, "0123456789-") == "" {
			return
		}
		a.written([]shWord{w})
	}
}
