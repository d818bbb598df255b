-- list_waits_for_user in one step: the SET's members whose blob is live for the lookup; members
-- whose blob is gone or owned elsewhere are pruned (a team '-' against no team is skipped, not
-- pruned), and the SET's TTL is set to cover its longest-lived remaining member.
-- KEYS[1] user SET
-- ARGV[1] blob key prefix; ARGV[2..5] the lookup's env, tenant_id, team ('' none), user;
-- ARGV[6] hint key prefix; ARGV[7] the user SET suffix
-- Returns the live keys, -1 when a member's blob is not SessionData (or not a string), -3 when
-- the SET key holds another type.
local members, set_wrong = members_of(KEYS[1])
if set_wrong then return -3 end
local live, dead, dead_hints, ttls = {}, {}, {}, {}
for _, member in ipairs(members) do
  local owner, state = owner_at(ARGV[1] .. member)
  if state == 'corrupt' then return -1 end
  local verdict = 'foreign'
  if owner then
    verdict = wait_verdict(owner, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
  else
    local _, its_scope = hint_parts(get_string(ARGV[6] .. member))
    if its_scope and slot_of_scope(its_scope) == ARGV[7] then
      table.insert(dead_hints, ARGV[6] .. member)
    end
  end
  if verdict == 'foreign' then
    table.insert(dead, member)
  else
    if verdict == 'live' then table.insert(live, member) end
    table.insert(ttls, redis.call('PTTL', ARGV[1] .. member))
  end
end
for _, member in ipairs(dead) do redis.call('SREM', KEYS[1], member) end
for _, hint in ipairs(dead_hints) do redis.call('DEL', hint) end
cover_apply(KEYS[1], cover_of(ttls))
return live
