-- Prepended (after get.lua and owner.lua) to the scripts that read or keep the wait indexes:
-- Rust's scope pointer `{ns}:waits:scope:{suffix}` and per-user SET `{ns}:waits:user:{slot}`,
-- and our hint `{ns}:waitof:{session key}` = '{ttl ms or empty}:{scope suffix}' (keys.py). Only
-- reads here, so each script still does every read before its first write.

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
  local theirs, mine = owner[3], team
  if theirs == '' then theirs = '-' end
  if mine == '' then mine = '-' end
  if owner[1] ~= env or owner[2] ~= tenant or theirs ~= mine then return 'foreign' end
  if owner[4] ~= '' and owner[4] ~= user then return 'foreign' end
  if owner[3] == team then return 'live' end
  return 'shared'
end

-- A hint's parts: ttl ms ('' for none) and scope suffix; nil for anything else.
local function hint_parts(hint)
  if not hint then return nil end
  local ttl, suffix = string.match(hint, '^(%d*):(.+)$')
  return ttl, suffix
end

-- The user SET suffix of a scope suffix (its last segment is the scope hash).
local function slot_of_scope(scope_suffix)
  return string.match(scope_suffix, '^(.*):[0-9a-f]+$')
end

-- A read of a key that may hold another type: (reply, false), or (false, true) when the key holds
-- another type; any other refusal (an ACL denial, say) fails the script, as get.lua's get_string.
local function read_typed(command, key, ...)
  local ok, value = pcall(redis.call, command, key, ...)
  if ok then return value, false end
  -- Redis 7.0 hands pcall the error as a string, later versions as a table {err = ...}.
  local text = type(value) == 'table' and value.err or tostring(value)
  if string.sub(text, 1, 9) == 'WRONGTYPE' then return false, true end
  error(redis.error_reply(text))
end

-- The members of the SET at `set_key`, and true when that key holds another type.
local function members_of(set_key)
  local members, wrong_type = read_typed('SMEMBERS', set_key)
  return members or {}, wrong_type
end

-- Whether `member` is in the SET at `set_key` (false for a key of another type).
local function is_member(set_key, member)
  return read_typed('SISMEMBER', set_key, member) == 1
end

-- The owner of the blob at `blob_key`, from its head when it can (no copy of a large blob):
-- (owner, 'ok'), (nil, 'gone') or (nil, 'corrupt') for a value that is not SessionData.
local function owner_at(blob_key)
  local head, wrong_type = read_typed('GETRANGE', blob_key, 0, 4095)
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

-- A session about to be written or touched by a store with expiry options (`idle`, `life` its
-- ms, '' when off): its wait, whose keys must live as long as the blob's new TTL (wait_apply),
-- or nil when it is none. With our hint naming a scope pointer that still names the session:
-- {ttl (the wait's own idle time), hint, pointer, set, set_ttl}. A wait a Rust writer made (no
-- hint) is known by its membership in its owner's SET (`owner_suffix`, '' for none): {ttl = idle,
-- set, set_ttl}. Reads only.
local function wait_of(hint_key, session_key, scope_prefix, set_prefix, idle, life, owner_suffix)
  if idle == '' and life == '' then return nil end
  local ttl, scope_suffix = hint_parts(get_string(hint_key))
  if scope_suffix and get_string(scope_prefix .. scope_suffix) == session_key then
    local set_key = set_prefix .. (slot_of_scope(scope_suffix) or '')
    return {ttl = ttl, hint = hint_key, pointer = scope_prefix .. scope_suffix, set = set_key,
            set_ttl = redis.call('PTTL', set_key)}
  end
  if owner_suffix ~= '' and is_member(set_prefix .. owner_suffix, session_key) then
    local set_key = set_prefix .. owner_suffix
    return {ttl = idle, set = set_key, set_ttl = redis.call('PTTL', set_key)}
  end
  return nil
end

-- Keep a wait's indexes alive as long as its blob, which just got `ttl` (writes only); a SET
-- without expiry (-1) keeps none.
local function wait_apply(wait, ttl)
  if wait.pointer then redis.call('PEXPIRE', wait.pointer, ttl) end
  if wait.hint then redis.call('PEXPIRE', wait.hint, ttl) end
  if wait.set_ttl >= 0 and wait.set_ttl < ttl then redis.call('PEXPIRE', wait.set, ttl) end
end
