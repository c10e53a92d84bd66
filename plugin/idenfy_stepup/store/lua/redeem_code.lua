-- KEYS[1] challenge, KEYS[2] its request in the layout before (lib/request.lua).
-- ARGV: 1 the code's SHA-256, 2 the access token's SHA-256, 3 the access token's lifetime (s),
-- 4 now, 5 the authenticated client's id ('': not checked). A code of another client is
-- 'missing' and left unchanged for its own client (the request's client_id is its short name
-- "c", stepup/records.py). The code and the access token live in the challenge they came from.
-- A second redemption revokes what the first one issued (RFC 6749 §4.1.2, §10.5); the record
-- then outlives the access token, so a replay is always caught.
-- Returns {'ok', request, auth_time, allowed riskTags (space-separated), ip_differs ('1'|'')}
-- or {'missing'} | {'reused'}.
--! include request
local c = redis.call('HMGET', KEYS[1], 'code', 'code_exp', 'at', 'auth_time', 'risk',
                     'ip_differs', 'qn')
if not c[1] or c[1] ~= ARGV[1] then return {'missing'} end
local req = stored_request(KEYS[1], c[7], KEYS[2])
if ARGV[5] ~= '' then
  local read, request = pcall(cjson.decode, req or '')
  if not read or type(request) ~= 'table' or request.c ~= ARGV[5] then return {'missing'} end
end
if c[3] then
  redis.call('HSET', KEYS[1], 'at', 'revoked')
  return {'reused'}
end
local now, lifetime = tonumber(ARGV[4]), tonumber(ARGV[3])
if (tonumber(c[2]) or 0) <= now then return {'missing'} end
if not req then return {'missing'} end
redis.call('HSET', KEYS[1], 'at', ARGV[2], 'at_exp', now + lifetime)
if redis.call('TTL', KEYS[1]) < lifetime then
  redis.call('EXPIRE', KEYS[1], lifetime)
  redis.call('EXPIRE', KEYS[2], lifetime) -- the layout before: the request's own key
end
return {'ok', req, c[4], c[5] or '', c[6] or ''}
