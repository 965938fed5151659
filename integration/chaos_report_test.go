package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeChaosReport writes the run's results as Markdown to report.md in the report
// directory, and logs the same table.
func writeChaosReport(t *testing.T, o chaosOptions, results []faultResult, inv *invariants, soak *soakResult, load *chaosLoad, phases []string) {
	var b strings.Builder
	mode := "bounded"
	if o.full {
		mode = "full"
	}
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Chaos run (%s), %s\n\n", mode, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs. Load: %d SQL clients (half on demo, buffered; half on demo-strict, strict), 2 HTTP clients (chaos-api, buffered; chaos-api-strict, strict) and 2 SSH clients (chaos-host, buffered; chaos-host-strict, strict); \"statements\" below counts all three. Time: %s.\n\n",
		host, runtime.NumCPU(), len(load.clients)-otherClients, strings.Join(phases, ", "))
	b.WriteString("| fault | down | ready after | load recovered after (SQL, HTTP) | SSH recovered after | trail in ClickHouse after | answered during (buffered/strict) | refused during (buffered/strict) | connects failed | outcome |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	d := func(x time.Duration) string {
		if x == 0 {
			return "–"
		}
		return x.Round(10 * time.Millisecond).String()
	}
	for _, r := range results {
		if strings.HasPrefix(r.outcome, "skipped") {
			fmt.Fprintf(&b, "| %s | | | | | | | | %s |\n", r.name, r.outcome)
			continue
		}
		outcome := r.outcome
		if len(r.failures) > 0 {
			outcome += ": " + strings.Join(r.failures, "; ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d / %d | %d / %d | %d | %s |\n", r.name, d(r.down), d(r.ready), d(r.recovery), d(r.sshRecovery), d(r.caughtUp),
			r.during.okBuffered, r.during.okStrict, r.during.failBuffered, r.during.failStrict, r.during.connectFailed, strings.ReplaceAll(outcome, "|", "\\|"))
	}
	b.WriteString("\n## What the clients got during each fault\n\n")
	for _, r := range results {
		if len(r.errors) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- **%s**: %s\n", r.name, strings.ReplaceAll(strings.Join(r.errors[:min(5, len(r.errors))], "; "), "|", "\\|"))
	}
	for _, r := range results {
		if r.wentOn > 0 || len(r.notes) > 0 {
			fmt.Fprintf(&b, "- **%s** (%s): the load went on through it: a strict statement and one that needed a decision, sent after it began, answered %s after\n",
				r.name, strings.Join(r.notes, "; "), d(r.wentOn))
		}
	}
	b.WriteString("\n## Invariants\n\n")
	fmt.Fprintf(&b, "- statements sent %d, answered %d (HTTP requests: %d sent, %d answered; SSH commands: %d sent, %d answered); every answered one has db.query, decision, db.result.chunk, db.query.done (http.request, decision, http.response, http.done; ssh.request, decision, ssh.io, ssh.exit) in ClickHouse (waited %s)\n",
		inv.sent, inv.answered, inv.httpSent, inv.httpAnswered, inv.sshSent, inv.sshAnswered, inv.trailWait.Round(time.Millisecond))
	fmt.Fprintf(&b, "- time to answer, by kind of client: %v\n", inv.latency)
	fmt.Fprintf(&b, "- exactly once: %d events after dedup, %d distinct ids; outside the %d sessions with a superseded sweeper's end (checked by audit verify), %d events at %d distinct (session, seq); %d rows before merging\n", inv.events, inv.ids, inv.superseded, inv.positioned, inv.positions, inv.rows)
	fmt.Fprintf(&b, "- forwarded to the database or the HTTP service: %d statements, %d without a decision that allowed them; as the HTTP service saw it: %d requests reached it, %d without an allowing decision in the trail; as the SSH host saw it: %d commands ran, %d without an allowing decision\n", inv.forwarded, inv.forwardedUndecided, inv.backendReached, inv.backendUndecided, inv.hostRan, inv.hostUndecided)
	fmt.Fprintf(&b, "- sessions: %d, %d ended and sealed (%d after a sweeper's end their gateway's signed events superseded); audit verify reports %v (incomplete: statements running when a proxy died, none answered)\n", inv.sessions, inv.ended, inv.superseded, inv.reported)
	fmt.Fprintf(&b, "- SIEM sinks: answered statements not received %v; each had them all after the checks above plus %v; JetStream's backlog then: %v\n", inv.sinkMissing, inv.sinkCaughtUp, inv.backlog)
	for _, n := range inv.notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}
	if len(inv.failures) == 0 {
		b.WriteString("- **all hold**\n")
	}
	for _, f := range inv.failures {
		fmt.Fprintf(&b, "- **broken**: %s\n", f)
	}
	if soak != nil {
		b.WriteString("\n## Soak\n\n")
		fmt.Fprintf(&b, "%d sessions (%d opened) for %s: %d statements answered, %d failed. Growth of the proxy's gauges, mean of the last quarter over the second: %s. Samples: %s, plot: %s.\n",
			soak.sessions, soak.opened, soak.duration, soak.answered, soak.refused, strings.Join(soak.growthStrings(), ", "), filepath.Base(soak.csv), filepath.Base(soak.svg))
		for _, n := range soak.notes {
			fmt.Fprintf(&b, "- note: %s\n", n)
		}
		for _, f := range soak.failures {
			fmt.Fprintf(&b, "- **broken**: %s\n", f)
		}
	}
	path := filepath.Join(o.report, "report.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write report: %v", err)
	}
	t.Logf("chaos report (%s):\n%s", path, b.String())
}
