-- find_wait_by_scope in one step: follow the scope pointer to its blob and judge the owner
-- (waits.lua's wait_verdict); a provably dead pointer (blob gone, or owned elsewhere) is deleted
-- with its SET member, and the hint of a gone blob with them.
-- KEYS[1] scope pointer; KEYS[2] user SET
-- ARGV[1] blob key prefix; ARGV[2..5] the lookup's env, tenant_id, team ('' none), user;
-- ARGV[6] hint key prefix; ARGV[7] the scope suffix
-- Returns the session key when live, false when none, -1 when the blob is not SessionData (or
-- not a string).
local key = get_string(KEYS[1])
if not key then return false end
local owner, state = owner_at(ARGV[1] .. key)
if state == 'corrupt' then return -1 end
local verdict, dead_hint = 'foreign', nil
if owner then
  verdict = wait_verdict(owner, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
else
  local _, its_scope = hint_parts(get_string(ARGV[6] .. key))
  if its_scope == ARGV[7] then dead_hint = ARGV[6] .. key end
end
if verdict == 'live' then return key end
if verdict == 'foreign' then
  local member = is_member(KEYS[2], key)
  redis.call('DEL', KEYS[1])
  if member then redis.call('SREM', KEYS[2], key) end
  if dead_hint then redis.call('DEL', dead_hint) end
end
return false
