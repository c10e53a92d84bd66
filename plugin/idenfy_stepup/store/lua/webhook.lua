-- KEYS[1] challenge, KEYS[2] webhook-id marker, KEYS[3] the challenge's request in the layout
-- before (lib/request.lua).
-- ARGV: 1 verdict (SUCCESS|DENIED|PENDING), 2 outcome name, 3 retryable (1|0), 4 scanRef,
--       5 type, 6 method, 7 now, 8 marker ttl, 9 channel, 10 token, 11 webhook id,
--       12 the outcome a SUCCESS is denied with for its riskTags ('' none), 13 its allowed
--       riskTags (space-separated, '' none), 14 the tag of the webhook's ipAddress identity
--       ('' unknown), 15 ip policy (deny: a SUCCESS from another address is denied),
--       16 the tag a challenge opened from no known address carries, 17 and 18 whether the
--       risk denial and IP_MISMATCH offer a new attempt (1|0: their rows' retryable),
--       19 and 20 the check type and method of a request that names none (its JSON leaves
--       them out: stepup/records.py)
-- duplicate, ignored and applied also return {…, state, outcome, opened_by, ip}: the webhook
-- handler counts a failure against the opening address (opened_by: its tag), locks the subject
-- after a spoof, and logs how the addresses compared (ip: same | differs | unknown). Every
-- answer but unknown ends with {…, expires_at, request}: the vendor session's end (the face
-- check's duration) and the stored request (its subject, its txn), so that the handler reads
-- nothing more.
-- An approval records its allowed riskTags ('risk') and whether its address differed
-- ('ip_differs'): the id_token reports both.
-- A flagged SUCCESS is denied here, in the step that would have approved it: the marker and
-- the terminal state make every later delivery, flagged or not, a duplicate or ignored.
-- The scanRef, type and method a webhook must match are the request's (its short names k, t
-- and m, stepup/records.py); a challenge of the layout before also copied them into its hash.
-- One read, one marker, one write and one publish: nothing is read twice.
--! include request
local c = redis.call('HMGET', KEYS[1], 'state', 'scan_ref', 'type', 'method', 'outcome', 'ip',
                     'expires_at', 'qn')
if not c[1] then return {'unknown'} end
local req = stored_request(KEYS[1], c[8], KEYS[3]) or ''
if not c[2] then
  -- An unreadable request (no scanRef in it) leaves them nil: a webhook that names one
  -- mismatches, and a SUCCESS always does.
  local read, request = pcall(cjson.decode, req)
  if read and type(request) == 'table' and type(request.k) == 'string' then
    c[2], c[3], c[4] = request.k, request.t or ARGV[19], request.m or ARGV[20]
  end
end
local ip = 'unknown'
if ARGV[14] ~= '' and c[6] and c[6] ~= ARGV[16] then
  ip = ARGV[14] == c[6] and 'same' or 'differs'
end
local function tail(verdict, detail, state, outcome)
  return {verdict, detail, state, outcome or '', c[6] or '', ip, c[7] or '', req}
end
local function bare(verdict, detail)
  return {verdict, detail or '', '', '', '', '', c[7] or '', req}
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[8]) then
  return tail('duplicate', '', c[1], c[5])
end
if c[1] ~= 'PENDING' then return tail('ignored', c[1], c[1], c[5]) end
if ARGV[4] ~= c[2] then
  if ARGV[1] == 'SUCCESS' or ARGV[4] ~= '' then return bare('mismatch', 'scanRef') end
end
if ARGV[5] ~= '' and ARGV[5] ~= c[3] then return bare('mismatch', 'type') end
if ARGV[6] ~= '' and ARGV[6] ~= c[4] then return bare('mismatch', 'method') end
if ARGV[1] == 'PENDING' then return bare('pending') end
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
