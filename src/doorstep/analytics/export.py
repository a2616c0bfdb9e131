"""The replica's initial build from a SQLite store, run in a child process: DuckDB's sqlite scanner copies
each table into a Parquet file, which the parent then loads.

Why a child process: DuckDB's sqlite extension carries its own copy of SQLite. Two copies of SQLite in one
process that open the same database break SQLite's locking (POSIX locks are per process, so one copy's close
drops the other's locks) and its WAL index (a `-shm` mapping resized by one copy under the other): in the full
test suite this crashed the process with SIGBUS while the app opened a connection. Across processes SQLite's
locking is sound, and the scanner is by far the fastest way to read millions of rows.

Input (JSON on stdin): {"store": path, "dir": out_dir, "tables": [[name, duckdb_select], ...]}; prints each
table's name once its file is written.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import duckdb

    from doorstep.analytics.engine import extension_directory

    spec = json.load(sys.stdin)
    con = duckdb.connect(
        ":memory:",
        config={"extension_directory": extension_directory(), "autoinstall_known_extensions": False},
    )
    con.execute("LOAD sqlite")
    store = spec["store"].replace("'", "''")
    con.execute(f"ATTACH '{store}' AS store (TYPE sqlite, READ_ONLY)")
    for name, select in spec["tables"]:
        target = f"{spec['dir']}/{name}.parquet".replace("'", "''")
        con.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet)")
        print(name, flush=True)
    con.close()


if __name__ == "__main__":
    main()
