-- Prepended to every script that creates, writes or touches a session: expiry with the server's
-- clock, by greentic_session/expiry.py's rule: a session expires at min(now + idle_ttl, the end
-- of its lifetime), and is expired once that is not after now.
-- The meta key (keys.RedisKeys.meta) is written only when it is needed: under max_lifetime (it
-- expires when the lifetime ends, set once at creation), and under idle_ttl alone for a user-less
-- session whose creator's user got a pointer (its value, the pointer suffix, is the only record
-- of that pointer); in a sealing store (seal.lua) for every session with a pointer, with or
-- without expiry, since a sealed blob's owner is hidden from the scripts. `idle` and `life` are
-- whole milliseconds as strings, '' when that option is off. Every read here (get.lua's get_string) comes before the script's first write, so a refused
-- read writes nothing; SET and PEXPIRE work on a key of any type.
-- Expiry times are absolute (SET PXAT, PEXPIREAT) and derived from one clock reading taken before
-- any PTTL: Redis 7.0 reads its clock afresh for each command, so a PTTL copied with a later
-- PEXPIRE would land after the key it was read from, and a blob outliving its meta key by a
-- millisecond would restart its lifetime. So a session's keys never outlive its meta key.

-- The server's clock, in whole milliseconds.
local function expiry_now()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- A new session: write its meta key if needed (`userless`: the session's data names no user);
-- returns nil when the store has no expiry, else {at (when its keys expire, absolute ms), ttl
-- (the same, relative)}.
local function expiry_start(meta_key, suffix, idle, life, userless)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then
    -- A sealing store records every pointer (seal.lua: a sealed blob's owner is hidden).
    if SEALED and suffix ~= '' then redis.call('SET', meta_key, suffix) end
    return nil
  end
  local now = expiry_now()
  local ends = l and now + l
  local at = ends
  if i and (not at or now + i < at) then at = now + i end
  if l or ((userless or SEALED) and suffix ~= '') then
    redis.call('SET', meta_key, suffix, 'PXAT', ends or at)
  end
  return {at = at, ttl = at - now}
end

-- The end of a session's lifetime (absolute ms) and whether the meta key must be written anew.
-- A blob without a meta key (or with one without expiry) has no recorded lifetime: one written
-- by another runtime, or by a store without max_lifetime. Its lifetime starts now, but never
-- ends after the expiry the blob already has (a Rust wait's ttl, or what a lost meta key held):
-- a write can never move a session's expiry later than a lifetime allows. Reads only.
local function expiry_lifetime(meta_key, blob_key, recorded, now, l)
  local left = -1
  if recorded then left = redis.call('PTTL', meta_key) end
  if left >= 0 then return now + left, false end
  left = l
  local own = redis.call('PTTL', blob_key)
  if own >= 0 and own < left then left = own end
  return now + left, true
end

-- An existing session about to be written or touched (reads only, so a refused read fails the
-- script before any write): returns nil when the store has no expiry, else
-- {at, ttl, expired, suffix, reset, ends, pointer_ours}: `at` and `ttl` as expiry_start's;
-- `expired` when `at` is not after now (the session's lifetime is over: the caller treats it as
-- gone and writes nothing); `ends` the lifetime's end the meta key gets when `reset`.
-- `fallback` is the pointer suffix of the session's own user ('' when it has none); it is used
-- when the meta key is missing, and makes the meta key unneeded under idle_ttl alone.
local function expiry_plan(meta_key, blob_key, fallback, idle, life, user_prefix, session_key)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  local now = expiry_now()  -- before any PTTL: now + PTTL is then never after the key's expiry
  local plan = {suffix = fallback, reset = false}
  if l or fallback == '' or SEALED then
    local suffix = get_string(meta_key)
    -- Under idle_ttl alone a user-less session keeps its meta key only while it has one.
    plan.suffix, plan.reset = suffix or fallback, suffix ~= false
    -- In a sealing store every session with a pointer has one: written (or, if it went
    -- missing and a touch recorded no pointer, repaired) from the owner's suffix.
    local repair = SEALED ~= nil and fallback ~= '' and (not suffix or suffix == '')
    if repair then plan.suffix, plan.reset = fallback, true end
    if l then
      plan.ends, plan.reset = expiry_lifetime(meta_key, blob_key, suffix, now, l)
      plan.reset = plan.reset or repair
    end
  end
  plan.at = plan.ends
  if i and (not plan.at or now + i < plan.at) then plan.at = now + i end
  plan.ttl = plan.at - now
  plan.expired = plan.ttl < 1
  -- The user pointer is refreshed only if it still names this session: a newer session's pointer
  -- keeps the newer session's expiry.
  -- (A user_prefix of '' means the pointer lives in another cluster slot: the caller does it.)
  plan.pointer_ours = plan.suffix ~= '' and user_prefix ~= ''
    and get_string(user_prefix .. plan.suffix) == session_key
  return plan
end

-- A sealing store's record of a session's pointer `suffix` in its meta key, when the session
-- has none yet (a plaintext session being sealed, in a store without expiry; under expiry
-- expiry_plan writes it). Writes only.
local function expiry_record_pointer(meta_key, suffix)
  if SEALED and suffix ~= '' then redis.call('SET', meta_key, suffix, 'NX') end
end

-- Apply a plan (writes only) once the session's own key got plan.at.
local function expiry_apply(plan, meta_key, user_prefix)
  if plan.reset then
    redis.call('SET', meta_key, plan.suffix, 'PXAT', plan.ends or plan.at)
  end
  if plan.pointer_ours then redis.call('PEXPIRE', user_prefix .. plan.suffix, plan.ttl) end
end
