package http

// FoldKey is foldKey, for tests.
var FoldKey = foldKey
