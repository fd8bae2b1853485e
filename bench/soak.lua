-- wrk script: cycle through the soak's kinds of request on every connection.
local body = string.rep("b", 1024)
local requests = {}

function init(args)
  requests[1] = wrk.format("GET", "/hello")
  requests[2] = wrk.format("POST", "/echo", {["Content-Type"] = "application/octet-stream"}, body)
  requests[3] = wrk.format("GET", "/stream")
  requests[4] = wrk.format("GET", "/error")
  requests[5] = wrk.format("GET", "/big")
  -- wrk.format would add a Content-Length: a chunked request is written by hand.
  requests[6] = "POST /echo HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "400\r\n" .. body .. "\r\n0\r\n\r\n"
end

local n = 0
function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end
