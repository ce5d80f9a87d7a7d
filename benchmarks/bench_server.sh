#!/usr/bin/env bash
# Requests per second of gunicorn with two workers, each with its share of the
# cores (the gunicorn.conf.py default) against each with every core (torch's
# default), in the same run. Needs wrk (Debian: apt-get install wrk).
#
#   bash benchmarks/bench_server.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
seconds=${1:-10}
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One held-out digit as a PNG, posted as the multipart field "file".
"$python" - "$work" <<'PY'
import io, sys
import numpy as np
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart
import folder_paths
with np.load(folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")) as data:
    digit = data["images"][0]
png = io.BytesIO()
Image.fromarray(255 - digit).resize((112, 112)).save(png, format="PNG")
boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(png.getvalue()), "digit.png")})
open(f"{sys.argv[1]}/body.bin", "wb").write(body)
open(f"{sys.argv[1]}/post.lua", "w").write(
    'wrk.method = "POST"\n'
    f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
    f'local f = io.open("{sys.argv[1]}/body.bin", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
PY

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for threads in "$cores" ""; do
  label=${threads:+"every core ($threads threads) per worker"}
  label=${label:-"the default share per worker"}
  env ${threads:+DIGITS_TORCH_THREADS=$threads} "$python" -m gunicorn -c gunicorn.conf.py -w 2 \
    -b "127.0.0.1:$port" --access-logfile /dev/null 'app:create_app()' >"$work/gunicorn.log" 2>&1 &
  server=$!
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
  used=$(curl -s "http://127.0.0.1:$port/model" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["threads"])')
  echo "== 2 workers, $label: torch threads per worker $used"
  wrk -t2 -c4 -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$port/predict" \
    | grep -E "Latency|Requests/sec|Non-2xx"
  kill "$server"
  wait "$server" 2>/dev/null || true
done
