-- Restart a session's idle clock: the blob, the meta key and the user pointer if it still names
-- this session get the TTL expiry.lua computes.
-- KEYS[1] session blob key; KEYS[2] meta key; KEYS[3] wait hint key
-- ARGV[1] idle ms; ARGV[2] lifetime ms; ARGV[3] user pointer key prefix; ARGV[4] session key;
-- ARGV[5] scope pointer prefix; ARGV[6] user SET prefix (a wait: see update.lua)
-- ARGV[3], ARGV[5], ARGV[6] '': the indexes live in another cluster slot (see update.lua).
-- Returns 1 when the session exists (with '' prefixes: {pointer suffix to refresh, its TTL ms},
-- as update.lua), 0 when it does not or its lifetime has ended.
local head = redis.call('GETRANGE', KEYS[1], 0, 4095)
if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fallback = ''
local owner = owner_of_head(head)
if owner then fallback = pointer_suffix(owner) end
local W, wait = nil, nil
-- The wait helpers only when this may be a wait: our hint, or a wait SET of its owner.
if (ARGV[1] ~= '' or ARGV[2] ~= '') and ARGV[6] ~= '' and (get_string(KEYS[3])
    or (fallback ~= '' and redis.call('EXISTS', ARGV[6] .. fallback) == 1)) then
  W = wait_keys()
  wait = W.wait_of(KEYS[3], ARGV[4], ARGV[5], ARGV[6], ARGV[1], ARGV[2], fallback)
end
local idle = ARGV[1]
if wait then idle = wait.ttl end
local plan = expiry_plan(KEYS[2], KEYS[1], fallback, idle, ARGV[2], ARGV[3], ARGV[4])
if plan then
  if plan.expired then return 0 end  -- its lifetime ended: gone, as it is a moment later
  redis.call('PEXPIREAT', KEYS[1], plan.at)
  expiry_apply(plan, KEYS[2], ARGV[3])
  if wait then W.wait_apply(wait, plan.ttl) end
end
if ARGV[3] == '' then return plan and {plan.suffix, plan.ttl} or {'', -1} end
return 1
