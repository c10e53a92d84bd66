-- KEYS[1] a new challenge's hash, KEYS[2] its request. ARGV: 1 ttl in seconds, 2 the request
-- (JSON), then field, value … Two keys so the hash's values stay short: Redis keeps a hash of
-- short values as one compact listpack (hash-max-listpack-value, 64 bytes by default). Returns 1.
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return 1
