-- KEYS[1] a new challenge's hash. ARGV: 1 ttl in seconds, then field, value … (the request's
-- JSON among them, cut into fields q1 … q<qn> of at most 63 bytes: store/request_parts.py), so
-- that every value stays short and Redis keeps the hash as one compact listpack
-- (hash-max-listpack-value, 64 bytes by default). Returns 1.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
