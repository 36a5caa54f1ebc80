"""projection_model - the read model the projection tests build

Deliberately not idempotent, so that an event applied twice or lost shows:
  stock   (sku, qty)              qty = qty + n for each StockChanged
  ledger  (seq, sku, n, total)    one row per event, keyed by its seq (a
                                  second apply of one event violates the key)
  total   (id 1, events, qty)     a running count and sum; each ledger row
                                  holds the running sum after its event
The same SQL runs on SQLite (sqlite3.Connection, ``?``) and PostgreSQL (a
psycopg2 cursor, ``%s``): give the placeholder.
"""

TABLES = ("stock", "ledger", "total")


class Ledger:
    def __init__(self, placeholder="?"):
        self.p = placeholder

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, "
                   "qty BIGINT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, "
                   "sku TEXT NOT NULL, n BIGINT NOT NULL, total BIGINT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY, "
                   "events BIGINT NOT NULL, qty BIGINT NOT NULL)")

    def reset(self, db):
        for table in TABLES:
            db.execute("DROP TABLE IF EXISTS %s" % table)

    def apply(self, db, event):
        change = event.json()
        sku, n = change["sku"], int(change["n"])
        p = self.p
        cursor = db.execute("INSERT INTO stock (sku, qty) VALUES (%s, %s) ON CONFLICT (sku) DO "
                            "UPDATE SET qty = stock.qty + excluded.qty" % (p, p), (sku, n))
        cursor = db.execute("UPDATE total SET events = events + 1, qty = qty + %s WHERE id = 1"
                            % p, (n,)) or db
        if cursor.rowcount == 0:
            db.execute("INSERT INTO total (id, events, qty) VALUES (1, 1, %s)" % p, (n,))
        cursor = db.execute("SELECT qty FROM total WHERE id = 1") or db
        total = cursor.fetchone()[0]
        db.execute("INSERT INTO ledger (seq, sku, n, total) VALUES (%s, %s, %s, %s)"
                   % (p, p, p, p), (event.seq, sku, n, total))


def expected(changes):
    """The read model that [(seq, sku, n), ...] in seq order must give:
    {table: sorted rows}."""
    stock, ledger, total, count = {}, [], 0, 0
    for seq, sku, n in changes:
        stock[sku] = stock.get(sku, 0) + n
        total += n
        count += 1
        ledger.append((seq, sku, n, total))
    return {"stock": sorted(stock.items()), "ledger": ledger,
            "total": [(1, count, total)] if count else []}


def dump(query):
    """{table: sorted rows} read with query(sql) -> rows."""
    return {"stock": [tuple(r) for r in query("SELECT sku, qty FROM stock ORDER BY sku")],
            "ledger": [tuple(r) for r in query("SELECT seq, sku, n, total FROM ledger "
                                               "ORDER BY seq")],
            "total": [tuple(r) for r in query("SELECT id, events, qty FROM total")]}
