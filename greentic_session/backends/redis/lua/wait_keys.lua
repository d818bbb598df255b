-- Prepended (after get.lua and owner.lua) to every script that reads or keeps a wait's keys:
-- Rust's scope pointer `{ns}:waits:scope:{suffix}` and per-user SET `{ns}:waits:user:{slot}`,
-- and our hint `{ns}:waitof:{session key}` = '{ttl ms or empty}:{scope suffix}' (keys.py). Only
-- reads here but in wait_apply, so each script still does every read before its first write.
--
-- The helpers are built on demand (`local W = wait_keys()`): Lua creates every function a script
-- defines on each call, and a script that needs them only sometimes (update.lua, touch.lua: under
-- expiry options) should not pay for them otherwise.

local function wait_keys()
  local W = {}
  -- A hint's parts: ttl ms ('' for none) and scope suffix; nil for anything else.
  function W.hint_parts(hint)
    if not hint then return nil end
    local ttl, suffix = string.match(hint, '^(%d*):(.+)$')
    return ttl, suffix
  end

  -- The user SET suffix of a scope suffix (its last segment is the scope hash).
  function W.slot_of_scope(scope_suffix)
    return string.match(scope_suffix, '^(.*):[0-9a-f]+$')
  end

  -- A read of a key that may hold another type: (reply, false), or (false, true) when the key holds
  -- another type; any other refusal (an ACL denial, say) fails the script, as get.lua's get_string.
  function W.read_typed(command, key, ...)
    local ok, value = pcall(redis.call, command, key, ...)
    if ok then return value, false end
    -- Redis 7.0 hands pcall the error as a string, later versions as a table {err = ...}.
    local text = type(value) == 'table' and value.err or tostring(value)
    if string.sub(text, 1, 9) == 'WRONGTYPE' then return false, true end
    error(redis.error_reply(text))
  end

  -- The members of the SET at `set_key`, and true when that key holds another type.
  function W.members_of(set_key)
    local members, wrong_type = W.read_typed('SMEMBERS', set_key)
    return members or {}, wrong_type
  end

  -- Whether `member` is in the SET at `set_key` (false for a key of another type).
  function W.is_member(set_key, member)
    return W.read_typed('SISMEMBER', set_key, member) == 1
  end

  -- A session about to be written or touched by a store with expiry options (`idle`, `life` its
  -- ms, '' when off): its wait, whose keys must live as long as the blob's new TTL (wait_apply),
  -- or nil when it is none. With our hint naming a scope pointer that still names the session:
  -- {ttl (the wait's own idle time), hint, pointer, set, set_ttl}. A wait a Rust writer made (no
  -- hint) is known by its membership in its owner's SET (`owner_suffix`, '' for none): {ttl = idle,
  -- set, set_ttl}. Reads only.
  function W.wait_of(hint_key, session_key, scope_prefix, set_prefix, idle, life, owner_suffix)
    if idle == '' and life == '' then return nil end
    local ttl, scope_suffix = W.hint_parts(get_string(hint_key))
    if scope_suffix and get_string(scope_prefix .. scope_suffix) == session_key then
      local set_key = set_prefix .. (W.slot_of_scope(scope_suffix) or '')
      return {ttl = ttl, hint = hint_key, pointer = scope_prefix .. scope_suffix, set = set_key,
              set_ttl = redis.call('PTTL', set_key)}
    end
    if owner_suffix ~= '' and W.is_member(set_prefix .. owner_suffix, session_key) then
      local set_key = set_prefix .. owner_suffix
      return {ttl = idle, set = set_key, set_ttl = redis.call('PTTL', set_key)}
    end
    return nil
  end

  -- Keep a wait's indexes alive as long as its blob, which just got `ttl` (writes only); a SET
  -- without expiry (-1) keeps none.
  function W.wait_apply(wait, ttl)
    if wait.pointer then redis.call('PEXPIRE', wait.pointer, ttl) end
    if wait.hint then redis.call('PEXPIRE', wait.hint, ttl) end
    if wait.set_ttl >= 0 and wait.set_ttl < ttl then redis.call('PEXPIRE', wait.set, ttl) end
  end
  return W
end
