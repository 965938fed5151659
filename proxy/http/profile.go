package http

import (
	"net/http"

	"github.com/gatehouse/gatehouse/schemas"
)

// Profile is what an API with its own meaning over HTTP adds to the proxy (the Kubernetes
// API: proxy/kube). The plain profile serves resources of type http.
type Profile interface {
	// Prepare reads a request once its path is normalised and its caller known: it may set
	// x.Kube (the decision's part) and x.Attrs (the event's), or refuse it (a status and a
	// message for the caller).
	Prepare(x *Exchange) (status int, refusal string)
	// Outgoing adjusts the request forwarded to the service (identity headers, Accept).
	Outgoing(x *Exchange, out *http.Request)
	// Masks adds what is masked in the response, given the decision: JSON fields by path.
	Masks(x *Exchange, d *schemas.DecisionReply) []schemas.MaskField
	// Upgrade returns how the messages of an allowed upgrade are recorded (nil: as http.ws).
	Upgrade(x *Exchange) MessageRecorder
	// Upgrades reports whether the profile takes upgrades to proto other than WebSocket
	// (which every profile takes).
	Upgrades(proto string) bool
}

// Refuser is a profile that renders the gateway's refusals its API's way (the Kubernetes
// API's Status objects) rather than as problem documents.
type Refuser interface {
	Refusal(status int, detail string) (contentType string, body []byte)
}

// MessageRecorder records the messages of an upgraded connection its API's way. Message
// gets each whole message (data bounded: complete reports whether it is whole), Close
// the end.
type MessageRecorder interface {
	Message(fromClient bool, op string, data []byte, size uint64, complete bool)
	Close()
}

// PieceRecorder is a MessageRecorder that takes each WebSocket message's payload in pieces
// as they pass, with no bound on a message's length (Message is then not called for data
// messages): a recorder that must see every byte the service reads (a Kubernetes exec's
// stdin) implements it.
type PieceRecorder interface {
	Piece(fromClient bool, op string, p []byte, first, last bool)
}

// plain is the profile of resources of type http.
type plain struct{}

func (plain) Prepare(*Exchange) (int, string)                             { return 0, "" }
func (plain) Outgoing(*Exchange, *http.Request)                           {}
func (plain) Masks(*Exchange, *schemas.DecisionReply) []schemas.MaskField { return nil }
func (plain) Upgrade(*Exchange) MessageRecorder                           { return nil }
func (plain) Upgrades(string) bool                                        { return false }
