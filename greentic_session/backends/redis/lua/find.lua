-- Follow a user pointer to its session blob in one round trip.
-- KEYS[1]  user pointer key
-- ARGV[1]  session blob key prefix ('{namespace}:session:', built by keys.RedisKeys)
-- Returns nil when there is no pointer, else {session key, blob or nil}; the blob slot is the
-- integer 0 when the blob key holds a non-string value.
local key = redis.call('GET', KEYS[1])
if not key then return false end
local blob, wrong_type = get_string(ARGV[1] .. key)
if wrong_type then return {key, 0} end
return {key, blob}
