package sftp

// extendedParsers reads the EXTENDED requests OpenSSH knows, after their
// name. Any other name is KindOther, decided with its name in Op.Ext.
var extendedParsers = map[string]func(s *Stream, d *decoder, c *call, name string){
	"posix-rename@openssh.com": func(s *Stream, d *decoder, c *call, name string) {
		from := d.path("old path", s.limits.MaxPath)
		to := d.path("new path", s.limits.MaxPath)
		s.renameOps(c, from, to, name)
	},
	"statvfs@openssh.com":     extPathOp(KindStat, false),
	"lsetstat@openssh.com":    extPathOp(KindSetstat, true),
	"expand-path@openssh.com": extPathOp(KindRealpath, false),
	"home-directory": func(s *Stream, d *decoder, c *call, name string) {
		user := d.path("user name", s.limits.MaxPath)
		s.op(c, KindRealpath, "~"+user, "", name)
	},
	// A hard link is a second name for the old file: whatever is written
	// through either name writes both, so both are decided as written.
	"hardlink@openssh.com": func(s *Stream, d *decoder, c *call, name string) {
		from := d.path("old path", s.limits.MaxPath)
		to := d.path("new path", s.limits.MaxPath)
		s.op(c, KindWrite, to, from, name)
		s.op(c, KindWrite, from, to, name)
	},
	// On a handle already decided, or telling nothing about files.
	"fsync@openssh.com":              func(s *Stream, d *decoder, c *call, _ string) { s.handleArg(d, c) },
	"fstatvfs@openssh.com":           func(s *Stream, d *decoder, c *call, _ string) { s.handleArg(d, c) },
	"limits@openssh.com":             func(*Stream, *decoder, *call, string) {},
	"users-groups-by-id@openssh.com": func(*Stream, *decoder, *call, string) {},
	// copy-data copies between two open handles on the server: the bytes
	// never pass, so it is decided as other and the written file's hash no
	// longer stands for its content.
	"copy-data": func(s *Stream, d *decoder, c *call, name string) {
		from := s.fileHandle(d, c)
		d.u64("read offset")
		d.u64("read length")
		to := s.fileHandle(d, c)
		d.u64("write offset")
		if from == nil || to == nil || d.err != nil {
			return
		}
		s.op(c, KindOther, to.path, from.path, name)
		c.forward = func() {
			if to.up != nil {
				to.up.sequential = false
			}
		}
	},
}

func extPathOp(kind string, attrs bool) func(s *Stream, d *decoder, c *call, name string) {
	return func(s *Stream, d *decoder, c *call, name string) {
		p := d.path("path", s.limits.MaxPath)
		if attrs {
			d.attrs()
		}
		s.op(c, kind, p, "", name)
	}
}

func (s *Stream) parseExtended(d *decoder, c *call) {
	name := d.path("extended request name", s.limits.MaxPath)
	if d.err != nil {
		return
	}
	if parse := extendedParsers[name]; parse != nil {
		parse(s, d, c, name)
		return
	}
	s.op(c, KindOther, "", "", name)
}
