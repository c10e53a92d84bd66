-- KEYS[1] challenge, KEYS[2] its request in the layout before (lib/request.lua).
-- ARGV: 1 binding, 2 max attempts, 3 now, 4 the binding in hex (a challenge written before
-- bindings were stored in base64url). Claims the right to start the next attempt so two
-- clicks on "try again" never spend two vendor sessions.
-- Returns {verdict, request, detail}: missing | forbidden | moved | consumed (detail: the next
-- token, '' none) | refused (detail: the outcome) | claimed (detail: the attempt).
--! include request
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'attempt', 'retryable', 'outcome',
                     'next', 'qn')
if not c[1] then return {'missing'} end
if c[2] ~= ARGV[1] and c[2] ~= ARGV[4] then return {'forbidden'} end
local req = stored_request(KEYS[1], c[7], KEYS[2])
if not req then return {'missing'} end
-- RETRYING: another click is creating the next attempt ('moved', not linked yet).
-- CONSUMED: finished, or retried already; the next token when there is one.
if c[1] == 'RETRYING' then return {'moved', req, ''} end
if c[1] == 'CONSUMED' then return {'consumed', req, c[6] or ''} end
if c[1] ~= 'DENIED' or c[4] ~= '1' or tonumber(c[3]) >= tonumber(ARGV[2]) then
  return {'refused', req, c[5] or ''}
end
redis.call('HSET', KEYS[1], 'state', 'RETRYING', 'retry_at', ARGV[3])
return {'claimed', req, c[3]}
