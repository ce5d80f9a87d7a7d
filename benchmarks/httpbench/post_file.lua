-- wrk script: POST one image file as the multipart form field "file", count
-- non-2xx answers, and print one JSON line of results when the run is done.
--
--   wrk -t1 -c8 -d15s -s post_file.lua http://127.0.0.1:PORT/predict -- IMAGE_PATH CONTENT_TYPE [PARTS]
--
-- PARTS (default 1) sends the image that many times, as that many "file" parts of one request.

local boundary = "wrk-bench-boundary-5f0c2a7e91d34b68"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*all")
  file:close()
  return data
end

function init(args)
  local path = args[1]
  local content_type = args[2] or "application/octet-stream"
  local parts = tonumber(args[3] or "1")
  local name = path:match("([^/]+)$")
  local part = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="' .. name .. '"\r\n'
    .. "Content-Type: " .. content_type .. "\r\n\r\n"
    .. read_file(path) .. "\r\n"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = string.rep(part, parts) .. "--" .. boundary .. "--\r\n"
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d, "status_4xx_5xx": %d, "non_2xx": %d, '
      .. '"mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.timeout, errors.status, bad,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
