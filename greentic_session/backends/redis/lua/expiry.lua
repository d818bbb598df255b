-- Prepended to every script that creates, writes or touches a session: expiry with the server's
-- clock, by greentic_session/expiry.py's rule: TTL = min(idle_ttl, what is left of max_lifetime).
-- The meta key (keys.RedisKeys.meta) is written only when it is needed: under max_lifetime (its
-- PTTL is the remaining lifetime, set once at creation), and under idle_ttl alone for a user-less
-- session whose creator's user got a pointer (its value, the pointer suffix, is the only record
-- of that pointer). `idle` and `life` are whole milliseconds as strings, '' when that option is
-- off. Every read here (get.lua's get_string) comes before the script's first write, so a refused
-- read writes nothing; SET and PEXPIRE work on a key of any type.

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

-- The plan from the meta key (reads only), under max_lifetime or for a user-less session.
local function expiry_of_meta(meta_key, fallback, i, l)
  local suffix = get_string(meta_key)
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

-- An existing session about to be written or touched (reads only, so a refused read fails the
-- script before any write): returns nil when the store has no expiry, else
-- {ttl, suffix, reset, life, pointer_ours}. `fallback` is the pointer suffix of the session's own
-- user ('' when it has none); it is used when the meta key is missing (a session another runtime
-- wrote: then a lifetime starts now), and makes the meta key unneeded under idle_ttl alone.
local function expiry_plan(meta_key, fallback, idle, life, user_prefix, session_key)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  local plan
  if not l and fallback ~= '' then
    plan = {ttl = i, suffix = fallback, reset = false}
  else
    plan = expiry_of_meta(meta_key, fallback, i, l)
  end
  -- The user pointer is refreshed only if it still names this session: a newer session's pointer
  -- keeps the newer session's expiry.
  -- (A user_prefix of '' means the pointer lives in another cluster slot: the caller does it.)
  plan.pointer_ours = plan.suffix ~= '' and user_prefix ~= ''
    and get_string(user_prefix .. plan.suffix) == session_key
  return plan
end

-- Apply a plan (writes only) once the session's own key got plan.ttl.
local function expiry_apply(plan, meta_key, user_prefix)
  if plan.reset then
    redis.call('SET', meta_key, plan.suffix, 'PX', plan.life or plan.ttl)
  end
  if plan.pointer_ours then redis.call('PEXPIRE', user_prefix .. plan.suffix, plan.ttl) end
end
