// Package scp inspects the classic scp (rcp) protocol, as OpenSSH's scp -O
// speaks it over an `scp -t PATH` exec (sink: the client uploads) or an
// `scp -f PATH` exec (source: the client downloads). OpenSSH 9's scp speaks
// SFTP by default; that goes through package sftp.
//
// One side is the source (it has the files), the other the sink. They take
// turns: the sink answers every record of the source with one response, and
// the source waits for it.
//
//	sink → source    0x00                      ready
//	source → sink    T<mtime> 0 <atime> 0\n     times of the next C or D (-p)
//	sink → source    0x00
//	source → sink    D<mode> 0 <name>\n        enter a directory (-r)
//	sink → source    0x00
//	source → sink    C<mode> <size> <name>\n   a file of size bytes
//	sink → source    0x00
//	source → sink    <size bytes> 0x00
//	sink → source    0x00
//	source → sink    E\n                       leave the directory
//	sink → source    0x00
//
// A response other than 0x00 is 0x01 (an error, the transfer goes on) or
// 0x02 (fatal) followed by a message line; the source sends such lines too,
// without an answer. A refused C or D is skipped by the source.
//
// A Stream follows both directions and insists on the turns: bytes from a
// side whose turn it is not are an error, because where a file's content ends
// depends on the sink's answer to its C record. For uploads each C and D
// record is put to the Decide callback before it is forwarded; a refusal is
// answered to the client with an 0x01 line, and the client skips the file.
package scp
