-- Abuse limits for one identity: all its counters are fields of one hash, each with its own
-- fixed window (field .. ':e' holds the window's end in ms); 'x' holds the latest end, which is
-- the hash's expiry. One round trip per identity.
-- KEYS: the subject's lock-out key (when ARGV[1] = 1), then the counters' hash.
-- ARGV: 1 lock flag, 2 now (ms), 3 add (1: count one event; 0: only check), then field, count,
--       window ms … per counter, in order.
-- A counter is over its limit when it already holds `count` events in its window; a window
-- opens with its first event; counting stops at the first counter over its limit.
-- Returns {'ok'} | {'locked', ms left} | {'limited', counter index (1-based), ms left}.
if ARGV[1] == '1' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return {'locked', left} end
end
local h = KEYS[#KEYS]
local now, add = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#ARGV - 3) / 3
local names = {'x'}
for i = 1, n do
  local f = ARGV[3 * i + 1]
  names[#names + 1] = f
  names[#names + 1] = f .. ':e'
end
local v = redis.call('HMGET', h, unpack(names))
local latest = tonumber(v[1]) or 0
local writes = {}
local verdict = {'ok'}
for i = 1, n do
  local f, limit, window = ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local count, ends = tonumber(v[2 * i]) or 0, tonumber(v[2 * i + 1]) or 0
  if ends <= now then count, ends = 0, now + window end
  local over = count >= limit
  if add == 1 then
    writes[#writes + 1] = f
    writes[#writes + 1] = count + 1
    writes[#writes + 1] = f .. ':e'
    writes[#writes + 1] = ends
    if ends > latest then latest = ends end
  end
  if over then
    verdict = {'limited', i, ends - now}
    break
  end
end
if #writes > 0 then
  writes[#writes + 1] = 'x'
  writes[#writes + 1] = latest
  redis.call('HSET', h, unpack(writes))
  if latest ~= (tonumber(v[1]) or 0) then redis.call('PEXPIREAT', h, latest) end
end
return verdict
