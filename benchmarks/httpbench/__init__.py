"""Parts of ``bench_http.py``: uploads, server lifetimes, wrk runs, in-process runs, reports."""
