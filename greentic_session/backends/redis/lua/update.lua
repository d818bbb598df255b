-- Replace a session blob only while it exists, is still owned by the caller's scope and, when the
-- caller names one, still has the expected revision (the SHA-1 of its bytes), so an update can
-- neither resurrect a removed session, nor overwrite one whose owner differs, nor lose a write
-- made since the caller read it (by any writer: the revision is computed from the bytes).
-- KEYS[1] session blob key; KEYS[2] meta key; KEYS[3] wait hint key
-- ARGV[1..4] expected owner: env, tenant_id, team, user ('' means none), as fence.scope_of gives
-- ARGV[5]  the new blob
-- ARGV[6]  how many leading bytes of the new blob hold its owner fields (codec.owner_prefix_length)
-- ARGV[7]  what the stored blob must still be: its revision (SHA-1 hex), or the very bytes the
--          caller read (update_with), as ARGV[13] says; '' with 'sha1' for no condition
-- ARGV[8], ARGV[9]  idle and lifetime ms (expiry.lua); ARGV[10] user pointer key prefix;
-- ARGV[11] session key; ARGV[12] the new owner's pointer suffix ('' for none)
-- ARGV[13] 'sha1' or 'bytes'
-- (Comparing bytes costs the server a string compare where a revision costs a SHA-1 of the
-- blob; Lua interns strings, so equal bytes compare in constant time once both are read.)
-- ARGV[14] scope pointer prefix; ARGV[15] user SET prefix (a wait's ttl stands in for idle_ttl,
-- and its scope pointer, hint and SET get the blob's new TTL: wait_keys.lua)
-- On a cluster, for a key whose indexes live in another slot (keys.RedisKeys.local_only),
-- ARGV[10], ARGV[14] and ARGV[15] are '': no pointer or wait key is read or written, and success
-- returns {pointer suffix to refresh ('' for none), its TTL ms (-1 for none)} instead of 1.
-- Returns 1 when written, 0 when the session is missing (or its lifetime has ended), -1 when the
-- stored blob is not SessionData JSON (nor a sealed blob this store reads), -2 when the revision
-- differs, {env, tenant_id, team, user} of the stored owner when it differs, -4 when a sealed
-- blob's owner differs (seal.lua: its digest is not the caller's owner's).
-- A sealing store (SEALED) never takes the fast path (its new blob holds no owner fields) and
-- keeps the pointer suffix in the meta key (ARGV[12] is always sent): the owner of a sealed blob
-- is hidden from remove.lua and touch.lua, which read the pointer from there.
local n = tonumber(ARGV[6])
local new = ARGV[5]

local raw, head, tail
if ARGV[13] == 'bytes' or ARGV[7] ~= '' then
  raw = redis.call('GET', KEYS[1])
  if not raw then return 0 end
  if ARGV[13] == 'bytes' then
    if raw ~= ARGV[7] then return -2 end
  elseif redis.sha1hex(raw) ~= ARGV[7] then
    return -2
  end
  head, tail = string.sub(raw, 1, n + 1024), string.sub(raw, -2)
else
  -- Without a revision only the head and the last bytes are read: no copy of a large blob.
  head = redis.call('GETRANGE', KEYS[1], 0, n + 1023)
end

-- Fast path, no JSON decode: the stored owner fields are byte-identical to the new blob's and no
-- further team/user field follows them (both writers emit serde's field order). A cheap shape
-- check keeps an obviously broken blob on the slow path, which reports it.
local after = string.sub(head, n + 1, n + 5)
local same_owner = not SEALED and head ~= '' and string.sub(head, 1, n) == string.sub(new, 1, n)
    and after ~= '"team' and after ~= '"user'
    and string.find(head, ',"cursor":{"node_pointer":"', n, true)
    and (tail or redis.call('GETRANGE', KEYS[1], -2, -1)) == '"}'

local was_sealed = not same_owner and is_sealed(head)
if not same_owner then
  local owner
  if was_sealed then
    owner = owner_of_sealed(head)
    if not owner then return -1 end
  else
    raw = raw or redis.call('GET', KEYS[1])
    if not raw then return 0 end
    local ok, data = pcall(cjson.decode, raw)
    -- A blob of the wrong shape is reported, never silently replaced (get would refuse it too).
    if not ok or type(data) ~= 'table'
        or type(data.tenant_ctx) ~= 'table' or type(data.flow_id) ~= 'string' or type(data.context_json) ~= 'string'
        or type(data.cursor) ~= 'table' or type(data.cursor.node_pointer) ~= 'string'
        or type(data.tenant_ctx.attempt) ~= 'number' then
      return -1
    end
    owner = owner_of_ctx(data.tenant_ctx)
    -- So is one whose owner another reader could see differently.
    if owner_is_ambiguous(raw, owner) then return -1 end
  end
  if owner_differs(owner, 1) then return owner_reply(owner) end
end

local W, wait = nil, nil
-- The wait helpers only when this may be a wait: our hint, or a wait SET of its owner.
if (ARGV[8] ~= '' or ARGV[9] ~= '') and ARGV[15] ~= '' and (get_string(KEYS[3])
    or (ARGV[12] ~= '' and redis.call('EXISTS', ARGV[15] .. ARGV[12]) == 1)) then
  W = wait_keys()
  wait = W.wait_of(KEYS[3], ARGV[11], ARGV[14], ARGV[15], ARGV[8], ARGV[9], ARGV[12])
end
local idle = ARGV[8]
if wait then idle = wait.ttl end
local plan = expiry_plan(KEYS[2], KEYS[1], ARGV[12], idle, ARGV[9], ARGV[10], ARGV[11])
if plan then
  if plan.expired then return 0 end  -- its lifetime ended: gone, as it is a moment later
  redis.call('SET', KEYS[1], new, 'PXAT', plan.at)
  expiry_apply(plan, KEYS[2], ARGV[10])
  if wait then W.wait_apply(wait, plan.ttl) end
else
  redis.call('SET', KEYS[1], new, 'KEEPTTL')
  -- A session first written in plaintext gets its pointer recorded as it is sealed.
  if not was_sealed then expiry_record_pointer(KEYS[2], ARGV[12]) end
end
if ARGV[10] == '' then return plan and {plan.suffix, plan.ttl} or {'', -1} end
return 1
