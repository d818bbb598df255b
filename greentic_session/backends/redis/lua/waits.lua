-- Prepended (after wait_keys.lua) to the four wait scripts: judging the session a wait index
-- names, and the TTL of a user's wait SET. Only reads here but in cover_apply.

local W = wait_keys()
local hint_parts, slot_of_scope, members_of, is_member =
    W.hint_parts, W.slot_of_scope, W.members_of, W.is_member

-- The owner of a stored blob, {env, tenant_id, team, user} ('' for none), or nil when the blob
-- is not SessionData JSON.
local function owner_of_blob(blob)
  local owner = owner_of_head(blob)
  if owner then return owner end
  local ok, data = pcall(cjson.decode, blob)
  if ok and type(data) == 'table' and type(data.tenant_ctx) == 'table' then
    return owner_of_ctx(data.tenant_ctx)
  end
  return nil
end

-- fence.wait_verdict for Redis: 'live', 'foreign' (provably dead here) or 'shared' (a team '-'
-- against no team: same keys, another owner). env, tenant, team ('' none), user: the lookup's.
local function wait_verdict(owner, env, tenant, team, user)
  if owner.sealed then return owner.verdict end  -- the client sent the digests it sees, judged
  if owner[1] ~= env or owner[2] ~= tenant or team_segment(owner[3]) ~= team_segment(team) then
    return 'foreign'
  end
  if owner[4] ~= '' and owner[4] ~= user then return 'foreign' end
  if owner[3] == team then return 'live' end
  return 'shared'
end

-- The owner of the blob at `blob_key`, from its head when it can (no copy of a large blob):
-- (owner, 'ok'), (nil, 'gone') or (nil, 'corrupt') for a value that is not SessionData.
local function owner_at(blob_key)
  local head, wrong_type = W.read_typed('GETRANGE', blob_key, 0, 4095)
  if wrong_type then return nil, 'corrupt' end
  if head == '' and redis.call('EXISTS', blob_key) == 0 then return nil, 'gone' end
  local owner = owner_of_head(head) or owner_of_blob(redis.call('GET', blob_key))
  if owner then return owner, 'ok' end
  return nil, 'corrupt'
end

-- The TTL a user SET needs to cover members with these PTTLs: -1 (persist) when one has no
-- expiry, else the longest; nil when there are none.
local function cover_of(ttls)
  local longest = nil
  for _, ttl in ipairs(ttls) do
    if ttl < 0 then return -1 end
    if not longest or ttl > longest then longest = ttl end
  end
  return longest
end

-- Apply cover_of's answer to the SET (writes only).
local function cover_apply(set_key, cover)
  if cover == -1 then
    redis.call('PERSIST', set_key)
  elseif cover then
    redis.call('PEXPIRE', set_key, cover)
  end
end
