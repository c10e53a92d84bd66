-- The request a challenge is for (its compact JSON), or false when it is gone or a part is
-- missing. It is cut into the hash's fields q1 … q<qn> of at most 63 bytes each, so that the
-- hash stays a listpack (store/request_parts.py); a challenge written before that layout keeps
-- it in a key of its own, `legacy`, in the same slot. `count`: the hash's `qn`, which each
-- script reads with its other fields.
local function stored_request(key, count, legacy)
  if not count then return redis.call('GET', legacy) end
  -- A count no create wrote (see request_parts.MAX_PARTS) is unreadable, not a long loop.
  local n = tonumber(count)
  if not n or n < 1 or n > 4096 or n % 1 ~= 0 then return false end
  local names = {}
  for i = 1, n do names[i] = 'q' .. i end
  local parts = redis.call('HMGET', key, unpack(names))
  for i = 1, n do
    if not parts[i] then return false end
  end
  return table.concat(parts)
end
