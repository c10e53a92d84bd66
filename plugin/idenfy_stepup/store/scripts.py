"""The Lua scripts behind every state transition (design.md §2, §4).

Each script touches keys of one challenge only, all sharing the ``{token}`` hash tag, so it
runs atomically in one slot on a single server, under Sentinel and in a Cluster alike.
Return values are flat arrays: ``{verdict, ...}``.
"""

# KEYS[1] challenge, KEYS[2] webhook-id marker.
# ARGV: 1 verdict (SUCCESS|DENIED|PENDING), 2 outcome name, 3 retryable (1|0), 4 scanRef,
#       5 type, 6 method, 7 now, 8 marker ttl, 9 channel, 10 token, 11 webhook id,
#       12 the outcome a SUCCESS is denied with for its riskTags ('' none), 13 its allowed
#       riskTags (space-separated, '' none), 14 the tag of the webhook's ipAddress identity
#       ('' unknown), 15 ip policy (deny: a SUCCESS from another address is denied),
#       16 the tag a challenge opened from no known address carries, 17 and 18 whether the
#       risk denial and IP_MISMATCH offer a new attempt (1|0: their rows' retryable)
# duplicate, ignored and applied also return {…, state, outcome, opened_by, ip}: the webhook
# handler counts a failure against the opening address (opened_by: its tag), locks the subject
# after a spoof, and logs how the addresses compared (ip: same | differs | unknown).
# An approval records its allowed riskTags ('risk') and whether its address differed
# ('ip_differs'): the id_token reports both.
# A flagged SUCCESS is denied here, in the step that would have approved it: the marker and
# the terminal state make every later delivery, flagged or not, a duplicate or ignored.
# One read, one marker, one write and one publish: nothing is read twice.
WEBHOOK = """
local c = redis.call('HMGET', KEYS[1], 'state', 'scan_ref', 'type', 'method', 'outcome', 'ip')
if not c[1] then return {'unknown'} end
local ip = 'unknown'
if ARGV[14] ~= '' and c[6] and c[6] ~= ARGV[16] then
  ip = ARGV[14] == c[6] and 'same' or 'differs'
end
local function tail(verdict, detail, state, outcome)
  return {verdict, detail, state, outcome or '', c[6] or '', ip}
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
local verdict, denial, retryable = ARGV[1], ARGV[2], ARGV[3]
if verdict == 'SUCCESS' and ARGV[12] ~= '' then
  verdict, denial, retryable = 'DENIED', ARGV[12], ARGV[17]
elseif verdict == 'SUCCESS' and ip == 'differs' and ARGV[15] == 'deny' then
  verdict, denial, retryable = 'DENIED', 'IP_MISMATCH', ARGV[18]
end
local state, outcome = 'APPROVED', c[5]
if verdict == 'SUCCESS' then
  local fields = {'state', state, 'auth_time', ARGV[7], 'webhook_id', ARGV[11]}
  if ARGV[13] ~= '' then
    fields[#fields + 1] = 'risk'
    fields[#fields + 1] = ARGV[13]
  end
  if ip == 'differs' then
    fields[#fields + 1] = 'ip_differs'
    fields[#fields + 1] = '1'
  end
  redis.call('HSET', KEYS[1], unpack(fields))
else
  state, outcome = 'DENIED', denial
  redis.call('HSET', KEYS[1], 'state', state, 'outcome', outcome, 'retryable', retryable,
             'webhook_id', ARGV[11], 'denied_at', ARGV[7])
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return tail('applied', state, state, outcome)
"""

# KEYS[1] challenge, KEYS[2] its request. ARGV: 1 binding, 2 now, 3 max attempts,
#   4 mode (finish|give_up|cancel), 5 expiry skew seconds, 6 stale-retry seconds,
#   7 the SHA-256 of the code this browser's finish issues (derived from its cookie, so a
#   repeated finish names the same code), 8 the code's expiry (unix time)
# Returns {verdict, request, detail, attempt, ip}; verdict is one of approved, denied, retry,
# expired, canceled, pending, moved, consumed, forbidden, missing. A finish repeated after the
# challenge was consumed answers as the first one did (a lost response, a reload, a proxy's
# retry): an approval again while its code is unredeemed and unexpired, a refusal again with
# the same outcome. `ip` (the opening address's tag) is returned with the verdict that
# consumes the challenge, so the caller can count a failure once.
FINISH = """
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'attempt', 'expires_at', 'outcome',
                     'retryable', 'next', 'retry_at', 'consumed_as', 'code', 'code_exp', 'at',
                     'ip')
local state = c[1]
if not state then return {'missing'} end
if c[2] ~= ARGV[1] then return {'forbidden'} end
local req = redis.call('GET', KEYS[2])
if not req then return {'missing'} end
local now = tonumber(ARGV[2])
local function out(verdict, detail) return {verdict, req, detail, c[3], ''} end
-- `fresh`: this ending was never counted (no webhook decided it), so the address's tag goes
-- back for the caller to count it.
local function consume(verdict, detail, fresh)
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', verdict)
  return {verdict, req, detail, c[3], fresh and (c[13] or '') or ''}
end
if state == 'CONSUMED' then
  local as = c[9]
  if as == 'approved' then
    if c[10] == ARGV[7] and not c[12] and (tonumber(c[11]) or 0) > now then
      return out('approved', '')
    end
    return out('consumed', '')
  end
  if as == 'denied' then return out('denied', c[5] or 'UNKNOWN') end
  if as == 'expired' then return out('expired', 'EXPIRED') end
  if as == 'canceled' then return out('canceled', 'CANCELED') end
  if as == 'retry_failed' then return out('denied', c[5] or 'VENDOR_UNAVAILABLE') end
  return out('consumed', c[7] or '')
end
if state == 'RETRYING' then
  if c[7] then return out('moved', c[7]) end
  if now - (tonumber(c[8]) or 0) > tonumber(ARGV[6]) then return consume('denied', c[5], false) end
  return out('pending', '')
end
-- A state or expiry this script does not know is unreadable: "start again", never "pending",
-- which would send the browser back and forth between the page and finish.
local expires_at = tonumber(c[4])
if state ~= 'PENDING' and state ~= 'APPROVED' and state ~= 'DENIED' then return {'missing'} end
if not expires_at then return {'missing'} end
if ARGV[4] == 'cancel' then return consume('canceled', 'CANCELED', state == 'PENDING') end
if state == 'APPROVED' then
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'approved', 'code', ARGV[7],
             'code_exp', ARGV[8])
  return out('approved', '')
end
if state == 'DENIED' then
  local more = c[6] == '1' and (tonumber(c[3]) or math.huge) < tonumber(ARGV[3])
  if more and ARGV[4] == 'finish' then return out('retry', c[5]) end
  -- A denial was counted when its webhook landed: consuming it counts nothing more.
  return consume('denied', c[5], false)
end
if now >= expires_at + tonumber(ARGV[5]) then return consume('expired', 'EXPIRED', true) end
return out('pending', '')
"""

# KEYS[1] challenge, KEYS[2] its request. ARGV: 1 binding, 2 max attempts, 3 now. Claims the
# right to start the next attempt so two clicks on "try again" never spend two vendor sessions.
RETRY_CLAIM = """
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'attempt', 'retryable', 'outcome',
                     'next')
if not c[1] then return {'missing'} end
if c[2] ~= ARGV[1] then return {'forbidden'} end
local req = redis.call('GET', KEYS[2])
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
"""

# KEYS[1] challenge. ARGV: 1 next token ('' when the next attempt could not be created),
# 2 channel, 3 token, 4 without a next attempt, the outcome that ended it (a repeated finish
# answers it). The publish wakes a concurrent click waiting for the link.
RETRY_LINK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RETRYING' then return 0 end
if ARGV[1] == '' then
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retry_failed',
             'outcome', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'state', 'CONSUMED', 'consumed_as', 'retried', 'next', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] challenge, KEYS[2] its request. ARGV: 1 the code's SHA-256, 2 the access token's
# SHA-256, 3 the access token's lifetime (s), 4 now. The code and the access token live in the
# challenge they came from. A second redemption revokes what the first one issued (RFC 6749
# §4.1.2, §10.5); the record then outlives the access token, so a replay is always caught.
# Returns {'ok', request, auth_time, allowed riskTags (space-separated), ip_differs ('1'|'')}
# or {'missing'} | {'reused'}.
REDEEM_CODE = """
local c = redis.call('HMGET', KEYS[1], 'code', 'code_exp', 'at', 'auth_time', 'risk',
                     'ip_differs')
if not c[1] or c[1] ~= ARGV[1] then return {'missing'} end
if c[3] then
  redis.call('HSET', KEYS[1], 'at', 'revoked')
  return {'reused'}
end
local now, lifetime = tonumber(ARGV[4]), tonumber(ARGV[3])
if (tonumber(c[2]) or 0) <= now then return {'missing'} end
local req = redis.call('GET', KEYS[2])
if not req then return {'missing'} end
redis.call('HSET', KEYS[1], 'at', ARGV[2], 'at_exp', now + lifetime)
if redis.call('TTL', KEYS[1]) < lifetime then
  redis.call('EXPIRE', KEYS[1], lifetime)
  redis.call('EXPIRE', KEYS[2], lifetime)
end
return {'ok', req, c[4], c[5] or '', c[6] or ''}
"""

# KEYS[1] a new challenge's hash, KEYS[2] its request. ARGV: 1 ttl in seconds, 2 the request
# (JSON), then field, value … Two keys so the hash's values stay short: Redis keeps a hash of
# short values as one compact listpack (hash-max-listpack-value, 64 bytes by default).
CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return 1
"""

# Abuse limits for one identity: all its counters are fields of one hash, each with its own
# fixed window (field .. ':e' holds the window's end in ms); 'x' holds the latest end, which is
# the hash's expiry. One round trip per identity.
# KEYS: the subject's lock-out key (when ARGV[1] = 1), then the counters' hash.
# ARGV: 1 lock flag, 2 now (ms), 3 add (1: count one event; 0: only check), then field, count,
#       window ms … per counter, in order.
# A counter is over its limit when it already holds `count` events in its window; a window
# opens with its first event; counting stops at the first counter over its limit.
# Returns {'ok'} | {'locked', ms left} | {'limited', counter index (1-based), ms left}.
LIMITS = """
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
"""

# KEYS[1] one address's open challenges: a sorted set of tokens scored by their vendor
# session's expiry (unix s), so an abandoned one stops counting by itself.
# ARGV: 1 now, 2 op (count | add | remove), 3 token, 4 its expiry. Returns how many are open.
OPEN_CHALLENGES = """
if ARGV[2] == 'add' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
elseif ARGV[2] == 'remove' then
  redis.call('ZREM', KEYS[1], ARGV[3])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
if ARGV[2] ~= 'count' and open > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[1], last[2])
end
return open
"""
