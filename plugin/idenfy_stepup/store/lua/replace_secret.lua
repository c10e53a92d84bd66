-- KEYS[1] the shared secrets' hash. ARGV: 1 the secret's name, 2 the value it must still hold,
-- 3 its new value (a re-encryption in place). Returns 1 when replaced, 0 when it held another.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
