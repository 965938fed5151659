package jsonmask

// emitRef adds b, a piece of the current Write's input, to the output. The first piece
// after a flush is kept by reference: pass-through output is mostly one piece per Write,
// written without a copy (Write flushes before it returns).
func (w *Writer) emitRef(b []byte) {
	if len(b) == 0 {
		return
	}
	if w.pend == nil && len(w.out) == 0 {
		w.pend = b
		return
	}
	w.emit(b)
}

// emit adds b to the output, writing to dst when enough is held.
func (w *Writer) emit(b []byte) {
	w.settle()
	if len(w.out)+len(b) > flushAt {
		w.flush()
		if len(b) > flushAt {
			w.write(b)
			return
		}
	}
	w.out = append(w.out, b...)
}

// settle moves the piece kept by reference into the output buffer (or to dst if large).
func (w *Writer) settle() {
	if w.pend == nil {
		return
	}
	if len(w.pend) >= flushAt/4 {
		w.write(w.pend)
	} else {
		w.out = append(w.out, w.pend...)
	}
	w.pend = nil
}

func (w *Writer) emitQuoted(s []byte) {
	w.settle()
	w.out = appendQuoted(w.out, s)
	if len(w.out) > flushAt {
		w.flush()
	}
}

func (w *Writer) flush() {
	w.settle()
	if len(w.out) > 0 {
		w.write(w.out)
		w.out = w.out[:0]
	}
}

func (w *Writer) write(b []byte) {
	if w.werr == nil {
		_, w.werr = w.dst.Write(b)
	}
}

// cut gives p[w.from:i] to the current mode.
func (w *Writer) cut(p []byte, i int) {
	seg := p[w.from:i]
	w.from = i
	switch w.mode {
	case modePass:
		w.emitRef(seg)
	case modeHold:
		if len(w.val)+len(seg) <= w.maxValue {
			w.val = append(w.val, seg...)
			return
		}
		if w.vinspect {
			w.val = w.val[:0]
			w.mode = modeSuppress
			return
		}
		// kept whole only to emit it whole: past the bound, it streams
		w.emit(w.val)
		w.emit(seg)
		w.val = w.val[:0]
		w.mode = modePass
	}
}

// held returns the held value ending at p[e] (exclusive), or nil if it
// is longer than maxValue.
func (w *Writer) held(p []byte, e int) []byte {
	seg := p[w.from:e]
	w.from = e
	if len(w.val)+len(seg) > w.maxValue {
		w.val = w.val[:0]
		return nil
	}
	if len(w.val) == 0 {
		return seg
	}
	w.val = append(w.val, seg...)
	return w.val
}

// release writes a value held only to be written whole, ending at p[e] (exclusive).
func (w *Writer) release(p []byte, e int) {
	w.emit(w.val)
	w.val = w.val[:0]
	w.mode = modePass
	w.cut(p, e)
}

// endChunk keeps what the next Write needs of p.
func (w *Writer) endChunk(p []byte) {
	switch w.state {
	case stString, stEsc, stHex:
		if w.inKey {
			if w.keyWant {
				w.keepKey(p[w.kstart:])
			}
		} else if w.mode == modePass && w.vinspect {
			// to be inspected whole: keep the part seen so far
			w.cut(p, w.vstart)
			w.mode = modeHold
		}
	case stNumMinus, stNumZero, stNumInt, stNumDot, stNumFrac, stNumE, stNumESign, stNumExp, stLit:
		if w.mode == modePass {
			// a number or literal is written whole: keep the part seen so far
			w.cut(p, w.vstart)
			w.mode = modeHold
		}
	}
	w.cut(p, len(p))
}

func (w *Writer) keepKey(seg []byte) {
	if w.keyLong {
		return
	}
	if len(w.keyBuf)+len(seg) > w.keyLimit {
		w.keyLong = true
		w.keyBuf = w.keyBuf[:0]
		return
	}
	w.keyBuf = append(w.keyBuf, seg...)
}

// endScalar ends the string, number or literal whose last byte is p[e-1]. One that fits
// in a Write stays where it is in p unless it is masked; one that spans Writes is in w.val.
func (w *Writer) endScalar(p []byte, e int) {
	w.endValue()
	if w.skipAt > 0 {
		return
	}
	switch w.mode {
	case modePass:
		if !w.vinspect {
			return
		}
		raw := p[w.vstart:e]
		if len(raw) > w.maxValue {
			w.cut(p, w.vstart)
			w.from = e
			w.redactWhole()
			return
		}
		if repl, ok := w.inspect(raw); ok {
			w.cut(p, w.vstart)
			w.from = e
			w.emitQuoted(repl)
		}
	case modeHold:
		if !w.vinspect {
			w.release(p, e)
			return
		}
		raw := w.held(p, e)
		w.mode = modePass
		if raw == nil {
			w.redactWhole()
			return
		}
		if repl, ok := w.inspect(raw); ok {
			w.emitQuoted(repl)
		} else {
			w.emit(raw)
		}
		w.val = w.val[:0]
	case modeSuppress:
		w.from = e
		w.mode = modePass
		w.redactWhole()
	}
}

// inspect returns what replaces the string or number raw (as written), if anything does.
func (w *Writer) inspect(raw []byte) ([]byte, bool) {
	var text []byte
	if raw[0] == '"' {
		text = raw[1 : len(raw)-1]
		if w.sawEsc {
			w.dec = unescape(w.dec[:0], text)
			text = w.dec
		}
		if w.vfield >= 0 {
			w.counts[w.vfield]++
			return w.maskText(w.methods[w.vfield], text), true
		}
	} else {
		text = raw
		for _, c := range raw {
			if c == '.' || c == 'e' || c == 'E' {
				if plain, ok := appendPlain(w.num[:0], raw); ok {
					w.num = plain
					text = plain
				}
				break
			}
		}
	}
	masked, n := w.detect(text)
	if n == 0 {
		return nil, false
	}
	w.counts[len(w.fields)] += uint64(n)
	return masked, true
}

var redacted = []byte(Redacted)

func (w *Writer) maskText(method string, v []byte) []byte {
	if w.mask == nil {
		return redacted
	}
	return w.mask(method, v)
}

// redactWhole replaces a value masked whole: one a field masks that is not a string or is too
// long to hold, or one the detectors cannot read because it is too long to hold.
func (w *Writer) redactWhole() {
	w.emitQuoted(redacted)
	if w.vfield >= 0 {
		w.counts[w.vfield]++
	} else {
		w.counts[len(w.fields)+1]++
	}
}
