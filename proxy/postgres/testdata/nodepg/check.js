// Exercises node-postgres (pg, pg-cursor, pg-query-stream, pg-copy-streams) against one
// PostgreSQL endpoint and prints one line per check, so that a run against PostgreSQL
// directly and one through Gatehouse can be compared line by line (TestNodePostgres).
// Usage: node check.js '<JSON pg.Client config>' [check]
// A config with "sslcheck": true also connects with TLS (the proxy has a certificate).
const pg = require('pg')
const Cursor = require('pg-cursor')
const QueryStream = require('pg-query-stream')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')
const { pipeline } = require('stream/promises')
const { Readable, Writable } = require('stream')

const cfg = JSON.parse(process.argv[2])
const only = process.argv[3]
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// until polls cond every 20 ms for up to 10 s (slow machines), then gives up quietly: the
// line printed afterwards shows what happened.
async function until(cond) { for (let i = 0; i < 500 && !(await cond()); i++) await sleep(20) }
const out = (name, v) => console.log(name + ' ' + JSON.stringify(v))
const errOf = (e) => ({ code: e.code, message: e.message, severity: e.severity, position: e.position })
const norm = (r) => ({ command: r.command, rowCount: r.rowCount, fields: r.fields.map((f) => [f.name, f.dataTypeID, f.format]), rows: r.rows })

async function withClient(extra, fn) {
  const c = new pg.Client({ ...cfg, ...extra })
  await c.connect()
  try { return await fn(c) } finally { await c.end().catch(() => {}) }
}

const checks = {
  async simple(c) { out('simple', norm(await c.query('select 1 as a, $$x$$::text as b'))) },
  async multi(c) { const rs = await c.query('select 1 as a; select 2 as b, 3 as c; create temp table t0(x int); insert into t0 values (1),(2)'); out('multi', rs.map(norm)) },
  async params(c) {
    const r = await c.query('select $1::int as i, $2::text as t, $3::text as n, $4::bytea as b, $5::jsonb as j, $6::int[] as a, $7::date as d, $8::numeric as num, $9::timestamptz as ts',
      [42, 'héllo', null, Buffer.from([0, 1, 2, 255]), { k: [1, 2] }, [1, 2, 3], '2024-02-29', '12345678901234567890.123', new Date(Date.UTC(2020, 0, 1))])
    out('params', norm(r))
  },
  async named(c) {
    const res = []
    for (let i = 0; i < 5; i++) res.push(norm(await c.query({ name: 'st1', text: 'select $1::int * 2 as x', values: [i] })))
    out('named', res)
    try { await c.query({ name: 'st1', text: 'select 2', values: [] }) } catch (e) { out('named-mismatch', errOf(e)) }
  },
  async binary(c) { out('binary', norm(await c.query({ text: 'select 1::int4 as a, 2::int8 as b, $$t$$::text as c, 1.5::float8 as d, true as e', binary: true }))) },
  async rowModeArray(c) { out('rowMode', norm(await c.query({ text: 'select 1 as a, 1 as a', rowMode: 'array' }))) },
  async errors(c) {
    try { await c.query('selec 1') } catch (e) { out('err-syntax-simple', errOf(e)) }
    try { await c.query('select $1::int', ['notanint']) } catch (e) { out('err-bind', errOf(e)) }
    try { await c.query('select * from nonexistent_tbl where a = $1', [1]) } catch (e) { out('err-parse-ext', errOf(e)) }
    try { await c.query({ name: 'bad1', text: 'select 1/$1::int as x', values: [0] }) } catch (e) { out('err-exec-named', errOf(e)) }
    out('err-recovered', norm(await c.query({ name: 'bad1', text: 'select 1/$1::int as x', values: [1] })))
    try { await c.query('select 1; selec 2; select 3') } catch (e) { out('err-multi', errOf(e)) }
    out('after-errors', norm(await c.query('select 7 as seven')))
  },
  async queued(c) {
    // pg queues these and sends each after the previous one's ReadyForQuery
    const ps = []
    for (let i = 0; i < 50; i++) ps.push(c.query('select $1::int as i', [i]).then((r) => r.rows[0].i, (e) => 'E' + e.code))
    ps.push(c.query('select 1/0').then(() => 'ok', (e) => 'E' + e.code))
    for (let i = 0; i < 5; i++) ps.push(c.query({ text: 'select $1::int as i', values: [i], name: 'q' + (i % 2) }).then((r) => r.rows[0].i, (e) => 'E' + e.code))
    out('queued', await Promise.all(ps))
  },
  async pipeline() {
    await withClient({ pipeline: true }, async (c2) => {
      const ps = []
      for (let i = 0; i < 100; i++) ps.push(c2.query('select $1::int as i', [i]).then((r) => r.rows[0].i, (e) => 'E' + e.code))
      ps.push(c2.query('select 1/0').then(() => 'ok', (e) => 'E' + e.code))
      ps.push(c2.query('select nope from nowhere').then(() => 'ok', (e) => 'E' + e.code))
      for (let i = 0; i < 20; i++) ps.push(c2.query({ name: 'p' + (i % 3), text: 'select $1::int * 3 as i', values: [i] }).then((r) => r.rows[0].i, (e) => 'E' + e.code))
      ps.push(c2.query('begin').then(() => 'b'))
      ps.push(c2.query('select 1/0').then(() => 'ok', (e) => 'E' + e.code))
      ps.push(c2.query('select 1').then(() => 'ok', (e) => 'E' + e.code))
      ps.push(c2.query('rollback').then(() => 'r'))
      ps.push(c2.query('select 2 as two').then((r) => r.rows[0].two))
      out('pipeline', await Promise.all(ps))
    })
  },
  async cursor(c) {
    const cur = c.query(new Cursor('select g, repeat($$x$$, g % 7) as s from generate_series(1, 1000) g where g > $1', [10]))
    const sizes = []; let sum = 0; let rows
    do { rows = await cur.read(97); sizes.push(rows.length); for (const r of rows) sum += r.g } while (rows.length)
    await cur.close()
    out('cursor', { sizes, sum })
    const cur2 = c.query(new Cursor('select g from generate_series(1, 100) g'))
    const first = await cur2.read(3)
    await cur2.close()
    out('cursor-early-close', { first, after: norm(await c.query('select 5 as five')) })
    const cur3 = c.query(new Cursor('select 1/(g-50) from generate_series(1, 100) g'))
    try { await cur3.read(10); await cur3.read(100) } catch (e) { out('cursor-error', errOf(e)) }
    out('cursor-after-error', norm(await c.query('select 6 as six')))
  },
  async stream(c) {
    const s = c.query(new QueryStream('select g, md5(g::text) as m from generate_series(1, 20000) g', [], { batchSize: 333 }))
    let n = 0; let h = 0
    for await (const r of s) { n++; h = (h + r.g * r.m.charCodeAt(0)) % 1000003 }
    out('stream', { n, h })
  },
  async copy(c) {
    await c.query('create temp table ct(a int, b text)')
    const w = c.query(copyFrom('COPY ct FROM STDIN'))
    const lines = []; for (let i = 0; i < 5000; i++) lines.push(`${i}\tline ${i}\n`)
    await pipeline(Readable.from(lines), w)
    out('copy-in', norm(await c.query('select count(*), sum(a) from ct')))
    let bytes = 0; let nl = 0
    const r = c.query(copyTo('COPY (select * from ct order by a) TO STDOUT'))
    await pipeline(r, new Writable({ write(chunk, enc, cb) { bytes += chunk.length; for (const b of chunk) if (b === 10) nl++; cb() } }))
    out('copy-out', { bytes, nl })
    const bad = c.query(copyFrom('COPY ct FROM STDIN'))
    try { await pipeline(Readable.from(['1\tok\n', 'notanint\tx\n']), bad) } catch (e) { out('copy-in-error', errOf(e)) }
    out('copy-after-error', norm(await c.query('select count(*) from ct')))
  },
  async notices(c) {
    const got = []
    c.on('notice', (n) => got.push([n.severity, n.code, n.message]))
    await c.query("do $$ begin raise notice 'hello %', 1; raise warning 'careful'; end $$")
    await c.query("set client_min_messages = debug1")
    await c.query("reset client_min_messages")
    out('notices', got)
  },
  async listen(c) {
    await withClient({}, async (c2) => {
      const got = []
      c.on('notification', (n) => got.push([n.channel, n.payload]))
      await c.query('listen chan_a')
      await c2.query("notify chan_a, 'one'")
      await c2.query("select pg_notify('chan_a', 'two')")
      await c2.query("notify chan_b, 'ignored'")
      await until(() => got.length >= 2)
      await c.query('unlisten *')
      out('listen', got)
    })
  },
  async cancel(c) {
    const started = Date.now()
    const q = c.query('select pg_sleep(5)')
    await withClient({}, (c2) => until(async () => (await c2.query("select 1 from pg_stat_activity where pid = $1 and state = 'active' and query like 'select pg_sleep%'", [c.processID])).rowCount > 0))
    // node-postgres cancels by a CancelRequest on a new connection with the BackendKeyData
    new pg.Client(cfg).cancel(c, c.activeQuery)
    try { await q; out('cancel', 'not cancelled') } catch (e) { out('cancel', { code: e.code, early: Date.now() - started < 4500 }) }
    out('cancel-after', norm(await c.query('select 8 as eight')))
  },
  async pid(c) {
    const r = await c.query('select pg_backend_pid() as pid')
    out('pid', { matchesBackendKeyData: r.rows[0].pid === c.processID })
  },
  async tx(c) {
    await c.query('begin')
    await c.query('create temp table txt(a int)')
    try { await c.query('insert into txt values ($1)', ['x']) } catch (e) { out('tx-err', errOf(e)) }
    try { await c.query('select 1') } catch (e) { out('tx-aborted', errOf(e)) }
    await c.query('rollback')
    try { await c.query('select * from txt') } catch (e) { out('tx-rolledback', errOf(e)) }
  },
  async empty(c) { out('empty', norm(await c.query(''))); out('empty-comment', norm(await c.query('-- nothing'))) },
  async big(c) {
    const parts = []; for (let i = 0; i < 2000; i++) parts.push(`select ${i} as c${i}`)
    const r = await c.query(parts.join(' union all '))
    out('big-query', r.rowCount)
    const long = 'x'.repeat(200000)
    out('big-param', (await c.query('select length($1::text) as l', [long])).rows)
  },
  async types(c) {
    const r = await c.query("select '2020-01-01 00:00:00+00'::timestamptz as ts, '1 day 2 hours'::interval as iv, '{\"a\":1}'::json as j, '{1,NULL,3}'::int[] as arr, 9223372036854775807::int8 as big, 'NaN'::float8 as nan, '\\xdeadbeef'::bytea as by, point(1,2) as p, '192.168.0.1/24'::inet as ip, 'a'::\"char\" as ch")
    out('types', { fields: r.fields.map((f) => [f.name, f.dataTypeID]), row: JSON.parse(JSON.stringify(r.rows[0])) })
  },
  async timeouts(c) {
    await withClient({ statement_timeout: 200 }, async (c2) => {
      try { await c2.query('select pg_sleep(2)') } catch (e) { out('statement_timeout', errOf(e)) }
      out('statement_timeout-show', (await c2.query('show statement_timeout')).rows)
    })
    await withClient({ options: '-c search_path=pg_catalog,public -c work_mem=8MB' }, async (c2) => {
      out('options', (await c2.query('show search_path')).rows.concat((await c2.query('show work_mem')).rows))
    })
    await withClient({ idle_in_transaction_session_timeout: 300 }, async (c2) => {
      const errs = []
      c2.on('error', (e) => errs.push(e.code || e.message))
      await c2.query('begin')
      // the backend's FATAL, then the connection's end
      await until(() => errs.length >= 2)
      try { await c2.query('select 1') } catch (e) { errs.push('q:' + (e.code || e.message)) }
      out('idle_in_tx_timeout', errs)
    })
  },
  async pool() {
    const p = new pg.Pool({ ...cfg, max: 4 })
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => p.query('select $1::int + 1 as n', [i])))
    out('pool', rs.reduce((a, r) => a + r.rows[0].n, 0))
    await p.end()
  },
  async quickDisconnect() {
    for (let i = 0; i < 10; i++) { const c = new pg.Client(cfg); await c.connect(); await c.end() }
    const c = new pg.Client(cfg); await c.connect()
    const q = c.query('select pg_sleep(0.2)').catch((e) => 'E:' + e.message)
    await c.end()
    out('quick-disconnect', typeof (await q))
  },
  async terminate(c) {
    await withClient({}, async (c2) => {
      const errs = []
      c2.on('error', (e) => errs.push(e.code))
      const r = await c.query('select pg_terminate_backend($1) as t', [c2.processID])
      await until(() => errs.length >= 2) // the backend's FATAL, then the connection's end
      let q
      try { await c2.query('select 1'); q = 'ran' } catch (e) { q = 'failed' }
      out('terminate', { t: r.rows[0].t, errs, q })
    })
  },
  async ssl() {
    if (!cfg.sslcheck) { out('ssl', 'skipped'); return }
    await withClient({ ssl: { rejectUnauthorized: false } }, async (c2) => {
      out('ssl', (await c2.query("select 1 as one")).rows)
    })
  },
}

;(async () => {
  for (const [name, fn] of Object.entries(checks)) {
    if (only && name !== only) continue
    try {
      if (fn.length === 0) await fn()
      else await withClient({}, fn)
    } catch (e) {
      out('FAILED ' + name, errOf(e))
    }
  }
})()
