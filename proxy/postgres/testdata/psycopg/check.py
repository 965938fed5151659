# Exercises psycopg 3 (Debian's python3-psycopg, over libpq) against one PostgreSQL endpoint
# and prints one line per check, so that a run against PostgreSQL directly and one through
# Gatehouse can be compared line by line (TestPsycopg). Usage: python3 check.py DSN
import json, sys, threading, time
import psycopg

dsn = sys.argv[1]
def out(name, v): print(name, json.dumps(v, default=str), flush=True)
def err(e): return {"sqlstate": e.sqlstate, "msg": str(e).split("\n")[0], "pos": e.diag.statement_position}

with psycopg.connect(dsn, autocommit=True) as c:
    out("simple", c.execute("select 1 as a, 'x'::text as b").fetchall())
    out("params", c.execute("select %s::int, %s::text, %s, %s::bytea, %s::numeric", (42, "héllo", None, b"\x00\x01\xff", "1.5")).fetchall())
    out("binary", c.execute("select 1::int4, 2::int8, 't'::text, 1.5::float8, true, '{1,2}'::int[]", binary=True).fetchall())
    # psycopg prepares a query server-side after it ran 5 times (prepare_threshold)
    out("auto-prepared", [c.execute("select %s::int * 2", (i,)).fetchone()[0] for i in range(10)])
    out("prepare-now", [c.execute("select %s::int + 1", (i,), prepare=True).fetchone()[0] for i in range(3)])
    try: c.execute("selec 1")
    except psycopg.Error as e: out("syntax", err(e))
    try: c.execute("select 1/%s::int", (0,))
    except psycopg.Error as e: out("div0", err(e))
    out("after", c.execute("select 7").fetchone())
    # pipeline mode (libpq pipeline)
    with c.pipeline() as p:
        curs = [c.execute("select %s::int", (i,)) for i in range(50)]
        p.sync()
        out("pipeline", [cur.fetchone()[0] for cur in curs])
    try:
        with c.pipeline():
            c.execute("select 1")
            c.execute("select 1/0")
            c.execute("select 2")
    except psycopg.Error as e: out("pipeline-error", err(e))
    out("pipeline-after", c.execute("select 8").fetchone())
    # executemany (pipelined in psycopg 3.1)
    c.execute("create temp table t(a int, b text)")
    with c.cursor() as cur:
        cur.executemany("insert into t values (%s, %s)", [(i, f"r{i}") for i in range(200)])
    out("executemany", c.execute("select count(*), sum(a) from t").fetchone())
    # COPY, text and binary
    with c.cursor() as cur:
        with cur.copy("copy t (a, b) from stdin") as cp:
            for i in range(1000): cp.write_row((i, f"c{i}"))
        with cur.copy("copy t (a, b) from stdin (format binary)") as cp:
            cp.set_types(["int4", "text"])
            for i in range(1000): cp.write_row((i, f"b{i}"))
        out("copy-in", c.execute("select count(*) from t").fetchone())
        rows = []
        with cur.copy("copy (select a, b from t order by a, b limit 5) to stdout (format binary)") as cp:
            cp.set_types(["int4", "text"])
            rows = list(cp.rows())
        out("copy-out-binary", rows)
    # server-side (named) cursor
    with c.transaction():
        with c.cursor(name="sc") as cur:
            cur.itersize = 77
            cur.execute("select g from generate_series(1, 1000) g")
            out("named-cursor", sum(r[0] for r in cur))
    # transaction status and errors in a transaction
    try:
        with c.transaction():
            c.execute("insert into t values ('x')")
    except psycopg.Error as e: out("tx-error", err(e))
    out("tx-status", str(c.info.transaction_status))
    # notices and notifies
    notices = []
    c.add_notice_handler(lambda d: notices.append([d.severity, d.sqlstate, d.message_primary]))
    c.execute("do $$ begin raise notice 'hi %', 2; end $$")
    out("notice", notices)
    c.execute("listen ch")
    with psycopg.connect(dsn, autocommit=True) as c2:
        c2.execute("notify ch, 'pay'")
    got = []
    for n in c.notifies():
        got.append([n.channel, n.payload]); break
    out("notify", got)
    # cancel
    def later():
        with psycopg.connect(dsn, autocommit=True) as c3:
            for _ in range(500):
                if c3.execute("select 1 from pg_stat_activity where pid = %s and state = 'active' and query like 'select pg_sleep%%'", (c.info.backend_pid,)).fetchone(): break
                time.sleep(0.02)
        c.cancel()
    th = threading.Thread(target=later); th.start()
    try: c.execute("select pg_sleep(5)")
    except psycopg.Error as e: out("cancel", err(e))
    th.join()
    out("cancel-after", c.execute("select 9").fetchone())
    out("pid", c.execute("select pg_backend_pid() = %s", (c.info.backend_pid,)).fetchone())
    out("params-status", [c.info.parameter_status(k) for k in ["server_encoding", "client_encoding", "DateStyle", "integer_datetimes", "standard_conforming_strings"]])
