-- wrk script: cycle through the soak's kinds of request on every connection.
local body = string.rep("b", 1024)
local requests = {}

function init(args)
  requests[1] = wrk.format("GET", "/hello")
  requests[2] = wrk.format("POST", "/echo", {["Content-Type"] = "application/octet-stream"}, body)
  requests[3] = wrk.format("GET", "/stream")
  requests[4] = wrk.format("GET", "/error")
  requests[5] = wrk.format("GET", "/big")
  requests[6] = wrk.format("POST", "/echo", {["Transfer-Encoding"] = "chunked"}, "400\r\n" .. body .. "\r\n0\r\n\r\n")
end

local n = 0
function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end
