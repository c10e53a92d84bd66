-- KEYS[1] challenge, KEYS[2] its request in the layout before it moved into the challenge's
--   hash (read when the hash holds none). ARGV: 1 binding, 2 now, 3 max attempts,
--   4 mode (finish|give_up|cancel), 5 expiry skew seconds, 6 stale-retry seconds,
--   7 the SHA-256 of the code this browser's finish issues (derived from its cookie, so a
--   repeated finish names the same code), 8 the code's expiry (unix time), 9 the binding as a
--   challenge written before bindings were stored in base64url kept it (hex)
-- Returns {verdict, request, detail, attempt, ip}; verdict is one of approved, denied, retry,
-- expired, canceled, pending, moved, consumed, forbidden, missing. A finish repeated after the
-- challenge was consumed answers as the first one did (a lost response, a reload, a proxy's
-- retry): an approval again while its code is unredeemed and unexpired, a refusal again with
-- the same outcome. `ip` (the opening address's tag) is returned with the verdict that
-- consumes the challenge, so the caller can count a failure once. An approval also returns
-- {…, auth_time, flagged ('1' when it carried allowed riskTags or a differing address, else
-- '')}: what a reuse record (stepup/reuse.py) is made of.
--! include request
local c = redis.call('HMGET', KEYS[1], 'state', 'binding', 'attempt', 'expires_at', 'outcome',
                     'retryable', 'next', 'retry_at', 'consumed_as', 'code', 'code_exp', 'at',
                     'ip', 'auth_time', 'risk', 'ip_differs', 'qn')
local state = c[1]
if not state then return {'missing'} end
if c[2] ~= ARGV[1] and c[2] ~= ARGV[9] then return {'forbidden'} end
local req = stored_request(KEYS[1], c[17], KEYS[2])
if not req then return {'missing'} end
local now = tonumber(ARGV[2])
local function out(verdict, detail) return {verdict, req, detail, c[3], ''} end
local function approved()
  local flagged = ((c[15] or '') ~= '' or c[16] == '1') and '1' or ''
  return {'approved', req, '', c[3], '', c[14] or '', flagged}
end
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
      return approved()
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
  return approved()
end
if state == 'DENIED' then
  local more = c[6] == '1' and (tonumber(c[3]) or math.huge) < tonumber(ARGV[3])
  if more and ARGV[4] == 'finish' then return out('retry', c[5]) end
  -- A denial was counted when its webhook landed: consuming it counts nothing more.
  return consume('denied', c[5], false)
end
if now >= expires_at + tonumber(ARGV[5]) then return consume('expired', 'EXPIRED', true) end
return out('pending', '')
