-- Delete a session blob and, only if it still points at this session, its owner's user pointer,
-- in one round trip: the pointer key is derived here from the stored owner (owner.lua).
-- KEYS[1]  session blob key
-- ARGV[1]  session key;  ARGV[2] user pointer key prefix ('{namespace}:user:', keys.RedisKeys)
-- Returns 1 when the blob was deleted, 0 when it was already gone.
-- A corrupt blob is still deleted; its pointer, if any, is cleared at the next lookup.
local head = redis.call('GETRANGE', KEYS[1], 0, 4095)
local owner = owner_of_head(head)
if not owner and head ~= '' then
  local ok, data = pcall(cjson.decode, redis.call('GET', KEYS[1]))
  if ok and type(data) == 'table' and type(data.tenant_ctx) == 'table' then
    owner = owner_of_ctx(data.tenant_ctx)
  end
end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if owner and owner[1] ~= '' and owner[2] ~= '' and owner[4] ~= '' then
  -- keys.RedisKeys.user's layout: {prefix}{env}:{tenant_id}:{team or '-'}:{user}
  local team = owner[3]
  if team == '' then team = '-' end
  local pointer = ARGV[2] .. owner[1] .. ':' .. owner[2] .. ':' .. team .. ':' .. owner[4]
  if redis.call('GET', pointer) == ARGV[1] then
    redis.call('DEL', pointer)
  end
end
return 1
