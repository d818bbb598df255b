-- find_or_create's second step: create the user's session unless one appeared since the lookup.
-- KEYS[1] user pointer key; KEYS[2] new session blob key; KEYS[3] its meta key
-- ARGV[1] the pointer's value the lookup saw ('' for none); ARGV[2] '1' when the lookup found that
-- session foreign (not the user's: it may be replaced), else '0'; ARGV[3] new blob;
-- ARGV[4] new session key; ARGV[5] pointer suffix; ARGV[6] idle ms; ARGV[7] lifetime ms;
-- ARGV[8] session blob key prefix; ARGV[9] '1' when the new data names no user, else '0'
-- ARGV[10] on a cluster, the pointer's hash tag (find.lua's ARGV[2])
-- Returns 1 when created, else {session key, blob} of the session the pointer now names (the
-- blob is the integer 0 when its key holds a non-string value, -2 when it lives in another
-- cluster slot), for the caller to judge.
local current = redis.call('GET', KEYS[1])
if current and not (current == ARGV[1] and ARGV[2] == '1') then
  if ARGV[10] and string.sub(current, 1, #ARGV[10]) ~= ARGV[10] then return {current, -2} end
  local blob, wrong_type = get_string(ARGV[8] .. current)
  if wrong_type then return {current, 0} end
  if blob then return {current, blob} end
end
local start = expiry_start(KEYS[3], ARGV[5], ARGV[6], ARGV[7], ARGV[9] == '1')
if start then
  redis.call('SET', KEYS[2], ARGV[3], 'PXAT', start.at)
  redis.call('SET', KEYS[1], ARGV[4], 'PXAT', start.at)
else
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[1], ARGV[4])
end
return 1
