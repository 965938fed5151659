// Package jsonmask masks fields of JSON documents as they stream, chosen by path, and
// runs content detectors over every other string and number, without holding a document
// whole.
//
// A Writer scans its input once, a byte at a time, in any pieces: a stream of top-level
// values (a body, newline-delimited JSON, a Kubernetes watch), each matched from $ again.
// What needs no masking is copied to the output as it is, byte for byte, as each Write
// is scanned. A value that must be inspected (a string or number a path reaches or the
// detectors read) is held until it is complete, up to Spec.MaxValue bytes, and written
// masked or as it was; past the bound it is replaced whole rather than held. An object
// or array a path reaches is consumed without holding anything and replaced by the
// string "[redacted]" when it ends.
//
// Member names are compared as decoded ("card\u005fnumber" is card_number), every
// occurrence of a duplicate name is masked, and the detectors see strings decoded and
// numbers in plain digits (4.111111111111111e15 is 4111111111111111): the decision is on
// what a client reads, not on how the upstream spelled it.
//
// Malformed input fails closed: a *SyntaxError with the offset, nothing written from
// that byte on nor any part of a value being inspected, and no more input taken. That
// includes bytes that are not UTF-8 (RFC 8259 §8.1: a reader may decode them in ways
// that join what the scan saw apart) and nesting deeper than Spec.MaxDepth.
package jsonmask
