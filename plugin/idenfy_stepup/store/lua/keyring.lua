-- A change of the generated signing keys (idenfy-stepup keys rotate | retire), applied only
-- if no other change came first, so two operators cannot lose each other's keys.
-- KEYS[1] the shared secrets' hash. ARGV: 1 the key-ring version the change was computed from
-- ('' when the keys were never changed), 2 the wake-up channel, 3 the message every instance
-- reloads its keys on, then field, value pairs (an empty value deletes the field).
-- Returns the new version, or 0 when another change came first (nothing written).
local seen = redis.call('HGET', KEYS[1], 'keys:version') or ''
if seen ~= ARGV[1] then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local version = redis.call('HINCRBY', KEYS[1], 'keys:version', 1)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return version
