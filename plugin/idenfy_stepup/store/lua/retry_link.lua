-- KEYS[1] challenge. ARGV: 1 next token ('' when the next attempt could not be created),
-- 2 channel, 3 token, 4 without a next attempt, the outcome that ended it (a repeated finish
-- answers it). The publish wakes a concurrent click waiting for the link.
-- Returns 1 when linked, 0 (nothing changed) when the record is no longer RETRYING.
if redis.call('HGET', KEYS[1], 'state') ~= 'RETRYING' then return 0 end
if ARGV[1] == '' then
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retry_failed',
             'outcome', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retried', 'next', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
