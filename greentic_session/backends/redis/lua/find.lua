-- Follow a user pointer to its session blob in one round trip.
-- KEYS[1]  user pointer key
-- ARGV[1]  session blob key prefix ('{namespace}:session:', built by keys.RedisKeys)
-- ARGV[2]  on a cluster, the pointer's hash tag: a key without it lives in another slot
-- Returns nil when there is no pointer, else {session key, blob or nil}; the blob slot is the
-- integer 0 when the blob key holds a non-string value, -2 when it is in another slot (the
-- caller reads it there).
local key = redis.call('GET', KEYS[1])
if not key then return false end
if ARGV[2] and string.sub(key, 1, #ARGV[2]) ~= ARGV[2] then return {key, -2} end
local blob, wrong_type = get_string(ARGV[1] .. key)
if wrong_type then return {key, 0} end
return {key, blob}
