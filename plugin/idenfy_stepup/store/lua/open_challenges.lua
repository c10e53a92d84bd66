-- KEYS[1] one address's open challenges: a sorted set of their members (a short tag of each
-- token, store.open_member) scored by their vendor session's expiry (unix s), so an abandoned
-- one stops counting by itself.
-- ARGV: 1 now, 2 op (count | add | remove), 3 the member, 4 its expiry, 5 on remove, the token
-- itself: the member a challenge opened before members were tags was added as. Returns how
-- many are open.
if ARGV[2] == 'add' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
elseif ARGV[2] == 'remove' then
  redis.call('ZREM', KEYS[1], ARGV[3], ARGV[5])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
if ARGV[2] ~= 'count' and open > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[1], last[2])
end
return open
