"""The Lua scripts behind every state transition (design.md §2, §4).

Each script touches keys of one challenge only, all sharing the ``{token}`` hash tag, so it
runs atomically in one slot on a single server, under Sentinel and in a Cluster alike.
Return values are flat arrays: ``{verdict, ...}``.
"""

# KEYS[1] challenge, KEYS[2] webhook-id marker.
# ARGV: 1 verdict (SUCCESS|DENIED|PENDING), 2 outcome name, 3 retryable (1|0), 4 scanRef,
#       5 type, 6 method, 7 now, 8 marker ttl, 9 channel, 10 token, 11 webhook id
# duplicate, ignored and applied also return {…, state, outcome, request, limits}: the webhook
# handler locks the subject after a spoof and refunds the rate limits of a success.
# One read, one marker, one write and one publish: nothing is read twice.
WEBHOOK = """
local c = redis.call('HMGET', KEYS[1], 'state', 'scan_ref', 'type', 'method', 'outcome',
                     'request', 'limits')
if not c[1] then return {'unknown'} end
local function tail(verdict, detail, state, outcome)
  return {verdict, detail, state, outcome or '', c[6] or '', c[7] or ''}
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[8]) then
  return tail('duplicate', '', c[1], c[5])
end
if c[1] ~= 'PENDING' then return tail('ignored', c[1], c[1], c[5]) end
if ARGV[4] ~= c[2] then
  if ARGV[1] == 'SUCCESS' or ARGV[4] ~= '' then return {'mismatch', 'scanRef'} end
end
if ARGV[5] ~= '' and ARGV[5] ~= c[3] then return {'mismatch', 'type'} end
if ARGV[6] ~= '' and ARGV[6] ~= c[4] then return {'mismatch', 'method'} end
if ARGV[1] == 'PENDING' then return {'pending'} end
local state, outcome = 'APPROVED', c[5]
if ARGV[1] == 'SUCCESS' then
  redis.call('HSET', KEYS[1], 'state', state, 'auth_time', ARGV[7], 'webhook_id', ARGV[11])
else
  state, outcome = 'DENIED', ARGV[2]
  redis.call('HSET', KEYS[1], 'state', state, 'outcome', outcome, 'retryable', ARGV[3],
             'webhook_id', ARGV[11], 'denied_at', ARGV[7])
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return tail('applied', state, state, outcome)
"""

# KEYS[1] challenge. ARGV: 1 binding, 2 now, 3 max attempts, 4 mode (finish|give_up|cancel),
#                        5 expiry skew seconds, 6 stale-retry seconds
# Returns {verdict, request, detail, attempt}; verdict is one of approved, denied, retry,
# expired, canceled, pending, moved, consumed, forbidden, missing.
FINISH = """
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'request', 'attempt', 'expires_at',
                     'outcome', 'retryable', 'auth_time', 'next', 'retry_at')
local state, req = c[1], c[3]
if not state then return {'missing'} end
if c[2] ~= ARGV[1] then return {'forbidden'} end
local now = tonumber(ARGV[2])
local function out(verdict, detail) return {verdict, req, detail, c[4]} end
local function consume(verdict, detail)
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', verdict)
  return out(verdict, detail)
end
if state == 'CONSUMED' then return out('consumed', c[9] or '') end
if state == 'RETRYING' then
  if c[9] then return out('moved', c[9]) end
  if now - (tonumber(c[10]) or 0) > tonumber(ARGV[6]) then return consume('denied', c[6]) end
  return out('pending', '')
end
-- A state or expiry this script does not know is unreadable: "start again" (invariant 6), never
-- "pending", which would send the browser back and forth between the page and finish.
local expires_at = tonumber(c[5])
if state ~= 'PENDING' and state ~= 'APPROVED' and state ~= 'DENIED' then return {'missing'} end
if not expires_at then return {'missing'} end
if ARGV[4] == 'cancel' then return consume('canceled', 'CANCELED') end
if state == 'APPROVED' then return consume('approved', c[8]) end
if state == 'DENIED' then
  local more = c[7] == '1' and (tonumber(c[4]) or math.huge) < tonumber(ARGV[3])
  if more and ARGV[4] == 'finish' then return out('retry', c[6]) end
  return consume('denied', c[6])
end
if now >= expires_at + tonumber(ARGV[5]) then return consume('expired', 'EXPIRED') end
return out('pending', '')
"""

# KEYS[1] challenge. ARGV: 1 binding, 2 max attempts, 3 now. Claims the right to start the next
# attempt so two clicks on "try again" never spend two vendor sessions.
RETRY_CLAIM = """
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'request', 'attempt', 'retryable',
                     'outcome', 'next')
if not c[1] then return {'missing'} end
if c[2] ~= ARGV[1] then return {'forbidden'} end
-- RETRYING: another click is creating the next attempt ('moved', not linked yet).
-- CONSUMED: finished, or retried already; the next token when there is one.
if c[1] == 'RETRYING' then return {'moved', c[3], ''} end
if c[1] == 'CONSUMED' then return {'consumed', c[3], c[7] or ''} end
if c[1] ~= 'DENIED' or c[5] ~= '1' or tonumber(c[4]) >= tonumber(ARGV[2]) then
  return {'refused', c[3], c[6] or ''}
end
redis.call('HSET', KEYS[1], 'state', 'RETRYING', 'retry_at', ARGV[3])
return {'claimed', c[3], c[4]}
"""

# KEYS[1] challenge. ARGV: 1 next token ('' when the next attempt could not be created),
# 2 channel, 3 token. The publish wakes a concurrent click waiting for the link.
RETRY_LINK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RETRYING' then return 0 end
if ARGV[1] == '' then
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retry_failed')
else
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retried', 'next', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] code. ARGV: 1 access-token hash, 2 ttl once redeemed (the access token's lifetime).
# A second redemption revokes what the first one issued (RFC 6749 §4.1.2, §10.5).
REDEEM_CODE = """
local c = redis.call('HMGET', KEYS[1], 'grant', 'at')
if not c[1] then return {'missing'} end
if c[2] then
  redis.call('HSET', KEYS[1], 'at', 'revoked')
  return {'reused'}
end
redis.call('HSET', KEYS[1], 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'ok', c[1]}
"""

# KEYS[1] a new hash. ARGV: 1 ttl in seconds, then field, value, field, value …
# The hash never lives without its expiry (one script: atomic, one round trip).
PUT_HASH = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Abuse limits for one identity (its keys share one hash tag): one round trip per identity.
# KEYS: the subject's lock-out key or '' (ARGV[1] = 1 when KEYS[1] is a lock to check), then
# the counters. ARGV[2..]: "count window_ms" per counter, in KEYS order.
# A counter's window opens with its first hit (INCR → 1 sets the expiry); the counters are hit
# in order and counting stops at the first one over its limit.
# Returns {'ok'} | {'locked', ms left} | {'limited', counter index (1-based), ms left}.
LIMITS = """
local first = 1
if ARGV[1] == '1' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return {'locked', left} end
  first = 2
end
for i = first, #KEYS do
  local spec = ARGV[i - first + 2]
  local count, window = string.match(spec, '(%d+) (%d+)')
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[i], window)
  elseif n > tonumber(count) then
    local left = redis.call('PTTL', KEYS[i])
    if left < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      left = tonumber(window)
    end
    return {'limited', i - first + 1, left}
  end
end
return {'ok'}
"""

# KEYS: counters of one identity. Gives back one hit to each (a successful step-up never
# counts); a counter back at zero is removed, an expired one is not re-created.
LIMITS_REFUND = """
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]))
  if n and n > 1 then
    redis.call('DECR', KEYS[i])
  elseif n then
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""
