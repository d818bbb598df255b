-- register_wait in one step: the blob (owner checked when the key is taken), the scope pointer,
-- the per-user SET member (Rust's keys and values) and our hint, with the wait's TTL on blob,
-- pointer and hint; the SET's TTL then covers its longest-lived member. A wait the scope named
-- before is superseded (its session stays, it stops being a wait); a key moving to another scope
-- leaves no pointer behind at the old one; dead SET members are pruned. A deadline (due_record.lua)
-- is written with the wait when ARGV[15] asks for one; the deadline this key or the superseded
-- wait had goes (its record, and on a single node its index member).
-- KEYS[1] blob key; KEYS[2] meta key; KEYS[3] hint key; KEYS[4] scope pointer; KEYS[5] user SET;
-- KEYS[6] deadline record; KEYS[7] deadline index (single node only: on a cluster the index lives
-- in other slots, and the store adds the member in a second step)
-- ARGV[1..4] the owner: env, tenant_id, team, user ('' none); ARGV[5] blob; ARGV[6] session key
-- ARGV[7] the store's lifetime ms ('' when off); ARGV[8] the hint value (it carries the wait's
-- ttl ms); ARGV[9] the owner's user pointer suffix; ARGV[10] blob key prefix; ARGV[11] hint key
-- prefix; ARGV[12] scope pointer prefix; ARGV[13] user pointer prefix; ARGV[14] deadline record
-- prefix; ARGV[15] the deadline, ms from now ('' for none); ARGV[16] its registration token;
-- ARGV[17] the ReplyScope as JSON
-- Returns 1 when registered (with a deadline: the deadline, ms since the epoch), -1 when the key
-- holds a blob that is not SessionData (or not a string), -3 when the user SET key holds another
-- type, or the stored owner when it differs (-4 when it is sealed: owner.lua's owner_reply).
local key, hint = ARGV[6], ARGV[8]
local wait_ttl, scope_suffix = hint_parts(hint)

local owner, state = owner_at(KEYS[1])
if state == 'corrupt' then return -1 end
local plan = nil
if owner and (wait_ttl ~= '' or ARGV[7] ~= '') then
  plan = expiry_plan(KEYS[2], KEYS[1], ARGV[9], wait_ttl, ARGV[7], ARGV[13], key)
  -- A session whose lifetime has ended is gone: this registers a new one under its key.
  if plan.expired then owner, plan = nil, nil end
end
local stored = owner ~= nil
if stored and owner_differs(owner, 1) then return owner_reply(owner) end

-- This key's old scope pointer, if it named another scope and still names this key.
local _, old_scope = hint_parts(get_string(KEYS[3]))
local old_pointer = nil
if old_scope and old_scope ~= scope_suffix
    and get_string(ARGV[12] .. old_scope) == key then
  old_pointer = ARGV[12] .. old_scope
end

-- The wait this scope named before, superseded now.
local previous = get_string(KEYS[4])
local previous_hint = nil
if previous and previous ~= key then
  local _, its_scope = hint_parts(get_string(ARGV[11] .. previous))
  if its_scope == scope_suffix then previous_hint = ARGV[11] .. previous end
else
  previous = nil
end

local members, set_wrong = members_of(KEYS[5])
if set_wrong then return -3 end
local dead, ttls = {}, {}
for _, member in ipairs(members) do
  if member ~= key and member ~= previous then
    local left = redis.call('PTTL', ARGV[10] .. member)
    if left == -2 then table.insert(dead, member) else table.insert(ttls, left) end
  end
end

local persist_pointer = nil
if stored and not plan and get_string(ARGV[13] .. ARGV[9]) == key then
  -- The session now has no expiry: nor has the user pointer create_session gave it.
  persist_pointer = ARGV[13] .. ARGV[9]
end

-- The deadlines this replaces: the key's own and the superseded wait's (a key of another type
-- there is deleted too: the new record takes its place).
local own_due, own_due_wrong = W.read_typed('HGET', KEYS[6], 'reg')
local previous_due, previous_due_wrong = false, false
if previous then previous_due, previous_due_wrong = W.read_typed('HGET', ARGV[14] .. previous, 'reg') end

-- Writes.
local at, ttl = nil, nil
if plan then
  at, ttl = plan.at, plan.ttl
elseif not stored then
  local start = expiry_start(KEYS[2], ARGV[9], wait_ttl, ARGV[7], false)
  if start then at, ttl = start.at, start.ttl end
end
if at then
  redis.call('SET', KEYS[1], ARGV[5], 'PXAT', at)
  if plan then expiry_apply(plan, KEYS[2], ARGV[13]) end
  redis.call('SET', KEYS[4], key, 'PXAT', at)
  redis.call('SET', KEYS[3], hint, 'PXAT', at)
else
  redis.call('SET', KEYS[1], ARGV[5])
  redis.call('SET', KEYS[4], key)
  redis.call('SET', KEYS[3], hint)
  if persist_pointer then redis.call('PERSIST', persist_pointer) end
  -- A stored plaintext session being sealed gets its pointer recorded (expiry.lua).
  if stored and not owner.sealed then expiry_record_pointer(KEYS[2], ARGV[9]) end
end
redis.call('SADD', KEYS[5], key)
if old_pointer then redis.call('DEL', old_pointer) end
if previous then redis.call('SREM', KEYS[5], previous) end
if previous_hint then redis.call('DEL', previous_hint) end
for _, member in ipairs(dead) do redis.call('SREM', KEYS[5], member) end
table.insert(ttls, ttl or -1)
cover_apply(KEYS[5], cover_of(ttls))
-- On a single node a key registered again keeps its registration token, so its index member
-- stays and only its score moves (the record is written anew: an old lease no longer settles).
-- On a cluster every registration gets a fresh one: its member is indexed in a later step, and a
-- late step of an older registration must not move the newer deadline.
local reg = ARGV[16]
if own_due and KEYS[7] and ARGV[15] ~= '' then reg = own_due end
if own_due or own_due_wrong then
  redis.call('DEL', KEYS[6])
  if own_due and KEYS[7] and reg ~= own_due then
    redis.call('ZREM', KEYS[7], own_due .. ':' .. key)
  end
end
if previous_due or previous_due_wrong then
  redis.call('DEL', ARGV[14] .. previous)
  if previous_due and KEYS[7] then redis.call('ZREM', KEYS[7], previous_due .. ':' .. previous) end
end
if ARGV[15] ~= '' then
  local due = expiry_now() + tonumber(ARGV[15])
  redis.call('HSET', KEYS[6], 'reg', reg, 'due', due, 'scope', scope_suffix, 'json', ARGV[17])
  if KEYS[7] then redis.call('ZADD', KEYS[7], due, reg .. ':' .. key) end
  return due
end
return 1
