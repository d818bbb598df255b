-- Prepended to the scripts that read a stored owner when the store loads them: the one Lua reading of a
-- stored blob's owner, as {env, tenant_id, team, user} with '' for none, normalized as
-- fence.scope_of does (the *_id field wins over the plain one).

-- From a decoded tenant_ctx table (cjson); absent or non-string fields count as none.
local function owner_of_ctx(ctx)
  local function pick(primary, fallback)
    local v = ctx[primary]
    if type(v) ~= 'string' then v = ctx[fallback] end
    if type(v) ~= 'string' then v = '' end
    return v
  end
  return {pick('env', 'env'), pick('tenant_id', 'tenant_id'), pick('team_id', 'team'),
          pick('user_id', 'user')}
end

-- From the blob's first bytes, without decoding it: both writers emit serde's field order and
-- identifiers cannot hold quotes, so the owner fields lead the blob in one fixed shape. Returns
-- nil for any other shape (the caller then decodes the whole blob).
local function owner_of_head(text)
  if is_sealed(text) then return owner_of_sealed(text) end
  local env, tenant_id, rest = string.match(text,
    '^{"tenant_ctx":{"env":"([^"]*)","tenant":"[^"]*","tenant_id":"([^"]*)"(.*)$')
  if not env then return nil end
  local found = {}
  for _, name in ipairs({'team', 'team_id', 'user', 'user_id'}) do
    local value, after = string.match(rest, '^,"' .. name .. '":"([^"]*)"(.*)$')
    if value then found[name], rest = value, after end
  end
  -- What follows must be the object's end or a whole non-owner field name; anything else (an
  -- owner field cut off by the end of the head, say) sends the caller to the full decode.
  if string.sub(rest, 1, 1) ~= '}' then
    local name = string.match(rest, '^,"([%w_]+)":')
    if not name or name == 'team' or name == 'team_id' or name == 'user' or name == 'user_id' then
      return nil
    end
  end
  found.env, found.tenant_id = env, tenant_id
  return owner_of_ctx(found)
end

-- An owner's team ('' for none) as a key segment: '-' for none (fence.team_segment's rule).
local function team_segment(team)
  if team == '' then return '-' end
  return team
end

-- The pointer suffix of an owner, keys.RedisKeys.slot_suffix's layout:
-- {env}:{tenant_id}:{team_segment}:{user}; '' when the owner has no user (no pointer). On a
-- cluster (CLUSTER_TAGS, scripts.py's first line) led by the user's hash tag, as keys.py's _tag.
local function pointer_suffix(owner)
  if owner.sealed then return owner.suffix end
  if owner[1] == '' or owner[2] == '' or owner[4] == '' then return '' end
  local plain = owner[1] .. ':' .. owner[2] .. ':' .. team_segment(owner[3]) .. ':' .. owner[4]
  if CLUSTER_TAGS then return '{' .. string.sub(redis.sha1hex(plain), 1, 8) .. '}:' .. plain end
  return plain
end

-- Whether a blob could be read with two owners. A repeated owner field (cjson keeps the last
-- copy, owner_of_head the first, the Python and Rust decoders refuse the blob) or a key spelled
-- with an escape (`"user\u005fid"`, which a text search cannot see) is a warning sign; a blob
-- showing one is ambiguous unless its head states the owner in the writers' shape and that owner
-- is the one cjson read (`owner`), as for a legal blob with an attributes key named "team".
local function owner_is_ambiguous(raw, owner)
  if owner.sealed then return false end  -- its owner is read from one digest: never two ways
  local suspect = string.find(raw, '\\u[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][^"]*":') ~= nil
  if not suspect then
    for _, name in ipairs({'env', 'tenant_id', 'team', 'team_id', 'user', 'user_id'}) do
      local needle = '"' .. name .. '":'
      local first = string.find(raw, needle, 1, true)
      if first and string.find(raw, needle, first + 1, true) then
        suspect = true
        break
      end
    end
  end
  if not suspect then return false end
  local head = owner_of_head(raw)
  if not head then return true end
  for i = 1, 4 do
    if head[i] ~= owner[i] then return true end
  end
  return false
end

-- Whether `owner` (as the functions above read it) differs from the owner ARGV[first ..
-- first + 3] names (env, tenant_id, team, user; '' for none). A sealed owner is the caller's
-- when its digest is the one the client sent as 'owner'.
local function owner_differs(owner, first)
  if owner.sealed then return owner.verdict ~= 'owner' end
  for i = 1, 4 do
    if owner[i] ~= ARGV[first + i - 1] then return true end
  end
  return false
end

-- A differing owner as update.lua and register_wait.lua report it: the stored owner's fields,
-- or -4 for a sealed one (whose fields the server never sees).
local function owner_reply(owner)
  if owner.sealed then return -4 end
  return owner
end
