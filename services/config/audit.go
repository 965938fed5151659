package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Audit bounds what the proxies record.
type Audit struct {
	// Mode is the default durability: strict or buffered (resources may override).
	Mode string `yaml:"mode"`
	// SpoolEvents bounds the messages waiting for JetStream (one message carries one or more
	// events); when full, new statements are refused.
	SpoolEvents int `yaml:"spool_events"`
	// SpoolBytes bounds the bytes of those messages in the same way. Default 256 MiB.
	SpoolBytes int `yaml:"spool_bytes"`
	// SpoolDir holds the spool's crash-safe journal (default data_dir/spool): every event
	// is written there before it goes to JetStream, and a statement's events before its
	// client is told the statement is complete, so a proxy process killed at any moment
	// loses nothing it answered; the next start on the same directory publishes what is
	// left. One directory per proxy process (it is locked). "none" keeps the spool in
	// memory only (faster by a write per statement; a crash loses what JetStream had not
	// acknowledged).
	SpoolDir string `yaml:"spool_dir"`
	// OfflineLimit refuses new sessions once an event has waited this long for JetStream
	// (a proxy cut off from NATS, e.g. in a remote network): the sessions already open go
	// on until the spool is full, and the spool catches up when the link returns. Default
	// 1m; negative leaves only the spool's size as the bound.
	OfflineLimit time.Duration `yaml:"offline_limit"`
	// SpoolWait is how long a statement may wait for room in a full spool before it is
	// refused (backpressure for bursts such as huge pipelines).
	SpoolWait time.Duration `yaml:"spool_wait"`
	// SigningKeyFile holds the gateway's Ed25519 key (base64 of its 32-byte seed): every
	// session's chain is sealed with it at the session's end. VerifyKeys are further public
	// keys (base64) whose seals gatehouse audit verify accepts (keys rotated out).
	SigningKeyFile string   `yaml:"signing_key_file"`
	VerifyKeys     []string `yaml:"verify_keys"`
	// Linger is how long a buffered session's events may wait to share one JetStream message
	// with the events of its next statements (JetStream's cost is per message). Strict
	// resources never linger. Default 5ms.
	Linger time.Duration `yaml:"linger"`
	// ResultChunkBytes bounds one db.result.chunk event.
	ResultChunkBytes int `yaml:"result_chunk_bytes"`
	// MaxResultBytes bounds the rows recorded per statement; later rows are counted only.
	MaxResultBytes int `yaml:"max_result_bytes"`
	// MaxSQLBytes bounds the statement text recorded in db.query.
	MaxSQLBytes int `yaml:"max_sql_bytes"`
	// Retention drops old months of the audit trail in ClickHouse.
	Retention Retention `yaml:"retention"`
	// GatewayTimeout is how long a proxy process may go without refreshing its key in
	// gh_gateways before its open sessions count as cut (it refreshes every quarter of
	// it). Default 30s.
	GatewayTimeout time.Duration `yaml:"gateway_timeout"`
	// SweepInterval is how often ingest ends the sessions of gateways that are gone
	// (session.end gateway_lost, sealed). Default 10s; negative: this process does not
	// sweep (another ingest copy does).
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// maxEventPart bounds what one audit event may carry of a result or a statement.
const maxEventPart = 256 << 10

// SpoolNone is the SpoolDir that keeps the spool in memory only.
const SpoolNone = "none"

func (a *Audit) applyDefaults(dataDir string) {
	def(&a.Mode, "buffered")
	def(&a.SpoolDir, filepath.Join(dataDir, "spool"))
	def(&a.SpoolEvents, 100000)
	def(&a.SpoolBytes, 256<<20)
	def(&a.SpoolWait, 5*time.Second)
	def(&a.OfflineLimit, time.Minute)
	def(&a.Linger, 5*time.Millisecond)
	def(&a.ResultChunkBytes, 64<<10)
	def(&a.MaxResultBytes, 1<<20)
	def(&a.MaxSQLBytes, 64<<10)
	def(&a.GatewayTimeout, 30*time.Second)
	def(&a.SweepInterval, 10*time.Second)
	a.Retention.applyDefaults()
}

func (a *Audit) validate(path string, ck *checker) {
	ck.oneOf(path+".mode", a.Mode, "strict", "buffered")
	if a.ResultChunkBytes < 1024 {
		ck.add(path+".result_chunk_bytes", "%d is below the 1024-byte minimum", a.ResultChunkBytes)
	}
	// An event has to fit in one NATS message (max_payload is 1 MiB unless configured).
	if a.ResultChunkBytes > maxEventPart {
		ck.add(path+".result_chunk_bytes", "%d is above the %d-byte maximum (an event must fit in a NATS message)", a.ResultChunkBytes, maxEventPart)
	}
	if a.MaxSQLBytes > maxEventPart {
		ck.add(path+".max_sql_bytes", "%d is above the %d-byte maximum (an event must fit in a NATS message)", a.MaxSQLBytes, maxEventPart)
	}
	if a.SpoolBytes < 1<<20 {
		ck.add(path+".spool_bytes", "%d is below the 1 MiB minimum", a.SpoolBytes)
	}
	a.Retention.validate(path+".retention", ck)
	if a.Linger < 0 || a.Linger > time.Second {
		ck.add(path+".linger", "%s is out of range (0 to 1s)", a.Linger)
	}
}

// Retention says how long ClickHouse keeps the audit trail, per resource label. The trail
// is partitioned by resource and month; the ingest service drops a partition once its
// newest event is older than the period of the first rule matching the resource's labels
// (default for resources no rule matches, removed resources, and _config's control
// events). Each run that drops something is recorded as an audit.retention event.
type Retention struct {
	// Default is the period for what no rule matches; 0 keeps it for ever.
	Default time.Duration   `yaml:"default"`
	Rules   []RetentionRule `yaml:"rules"`
	// Interval between runs (default 1h).
	Interval time.Duration `yaml:"interval"`
}

// RetentionRule keeps the events of resources carrying all of Labels for Keep.
type RetentionRule struct {
	Labels map[string]string `yaml:"labels"`
	Keep   time.Duration     `yaml:"keep"`
}

// Enabled says whether anything is ever dropped.
func (r Retention) Enabled() bool { return r.Default > 0 || len(r.Rules) > 0 }

// MinRetention is the shortest period accepted: a mistyped "1h" must not empty the trail.
const MinRetention = 24 * time.Hour

func (r *Retention) applyDefaults() {
	def(&r.Interval, time.Hour)
}

func (r *Retention) validate(path string, ck *checker) {
	if d := r.Default; d != 0 && d < MinRetention {
		ck.add(path+".default", "%s is below the %s minimum (0 keeps for ever)", d, MinRetention)
	}
	for i, rule := range r.Rules {
		p := fmt.Sprintf("%s.rules[%d]", path, i)
		if len(rule.Labels) == 0 {
			ck.add(p+".labels", "required (the labels a resource must carry, e.g. env: production)")
		}
		if rule.Keep < MinRetention {
			ck.add(p+".keep", "%s is below the %s minimum", rule.Keep, MinRetention)
		}
	}
	if r.Interval < time.Minute {
		ck.add(path+".interval", "%s is below the 1m minimum", r.Interval)
	}
}
