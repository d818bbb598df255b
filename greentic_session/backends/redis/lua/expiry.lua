-- Prepended to every script that creates, writes or touches a session: expiry with the server's
-- clock, by greentic_session/expiry.py's rule: TTL = min(idle_ttl, what is left of max_lifetime).
-- The meta key (keys.RedisKeys.meta) is written only when it is needed: under max_lifetime (its
-- PTTL is the remaining lifetime, set once at creation), and under idle_ttl alone for a user-less
-- session whose creator's user got a pointer (its value, the pointer suffix, is the only record
-- of that pointer). `idle` and `life` are whole milliseconds as strings, '' when that option is
-- off. Nothing here raises after a write: reads that could fail on a key of the wrong type are
-- pcall'd, and SET/PEXPIRE work on any key.

-- A new session: write its meta key if needed (`userless`: the session's data names no user);
-- returns its TTL, or nil when the store has no expiry.
local function expiry_start(meta_key, suffix, idle, life, userless)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  local ttl = i
  if l and (not ttl or l < ttl) then ttl = l end
  if l or (userless and suffix ~= '') then
    redis.call('SET', meta_key, suffix, 'PX', l or ttl)
  end
  return ttl
end

-- An existing session about to be written or touched (reads only): returns nil when the store
-- has no expiry, else {ttl, suffix, reset}. `fallback` is the pointer suffix of the session's own
-- user ('' when it has none); it is used when the meta key is missing (a session another runtime
-- wrote: then a lifetime starts now), and makes the meta key unneeded under idle_ttl alone.
local function expiry_plan(meta_key, fallback, idle, life)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  if not l and fallback ~= '' then
    return {ttl = i, suffix = fallback, reset = false}
  end
  local ok, suffix = pcall(redis.call, 'GET', meta_key)
  if not ok then suffix = false end
  -- Under idle_ttl alone a user-less session keeps its meta key only while it has one.
  local plan = {ttl = i, suffix = suffix or fallback, reset = l ~= nil or suffix ~= false, life = l}
  if l then
    local left = -2
    if suffix then left = redis.call('PTTL', meta_key) end
    if left >= 0 then plan.reset = false else left = l end
    if not plan.ttl or left < plan.ttl then plan.ttl = left end
  end
  if plan.ttl < 1 then plan.ttl = 1 end
  return plan
end

-- Apply a plan after the session's own key got plan.ttl: the meta key, and the user pointer if it
-- still names this session (a newer session's pointer keeps the newer session's expiry).
local function expiry_apply(plan, meta_key, user_prefix, session_key)
  if plan.reset then
    redis.call('SET', meta_key, plan.suffix, 'PX', plan.life or plan.ttl)
  end
  if plan.suffix ~= '' then
    local pointer = user_prefix .. plan.suffix
    local ok, current = pcall(redis.call, 'GET', pointer)
    if ok and current == session_key then redis.call('PEXPIRE', pointer, plan.ttl) end
  end
end
