-- balance_at: the balance of ACCOUNT at a random instant of its history.
local account = os.getenv("ACCOUNT")
local first = tonumber(os.getenv("FIRST_MS"))
local last = tonumber(os.getenv("LAST_MS"))

request = function()
  local ms = math.random(first, last)
  local at = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
  return wrk.format("GET", "/v1/accounts/" .. account .. "/balances?at=" .. at, json_headers)
end

function on_response(status, body)
  if status == 200 then completed = completed + 1 end
end
