// Package sftp inspects SFTP version 3 (draft-ietf-secsh-filexfer-02, what
// OpenSSH speaks) as it passes through the gateway, one session channel at a
// time.
//
// The message sequence on a channel running the sftp subsystem:
//
//	client → server  INIT version [extension pairs]
//	server → client  VERSION 3 [extension pairs]
//	client → server  requests, each with a request id: OPEN, CLOSE, READ,
//	                 WRITE, (L|F)STAT, (F)SETSTAT, OPENDIR, READDIR, REMOVE,
//	                 MKDIR, RMDIR, REALPATH, RENAME, READLINK, SYMLINK,
//	                 EXTENDED name ...
//	server → client  one response per request, matched by id: STATUS,
//	                 HANDLE (to OPEN and OPENDIR), DATA (to READ), NAME,
//	                 ATTRS, EXTENDED_REPLY
//
// A Stream parses whole packets in both directions. Each request that
// touches the host's files by name is put to the Decide callback first; a
// refused request is not forwarded and the client gets a STATUS
// PERMISSION_DENIED with the same request id instead. Requests on an open
// handle (READ, WRITE, READDIR, FSTAT, CLOSE) were decided with the OPEN or
// OPENDIR that made the handle. The bytes of WRITE requests and of the DATA
// replies to READ requests are hashed per handle, and a File record comes
// out when the handle is closed.
//
// Everything in the stream is controlled by an untrusted peer: packet
// lengths, the number of outstanding requests and open handles and path
// lengths are bounded by Limits, and any malformed or over-limit packet is an
// error after which the channel must be closed.
package sftp
