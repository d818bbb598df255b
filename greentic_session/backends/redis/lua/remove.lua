-- Delete a session blob, its meta key and, only if it still names this session, its user pointer,
-- in one round trip: the pointer comes from the meta key (which knows the pointer of a user-less
-- session too) or else from the stored owner (owner.lua). Every read that could fail comes before
-- the first delete, so the script never deletes and then fails.
-- KEYS[1] session blob key; KEYS[2] meta key
-- ARGV[1] session key; ARGV[2] user pointer key prefix ('{namespace}:user:', keys.RedisKeys)
-- Returns 1 when the blob was deleted, 0 when it was already gone.
-- A corrupt blob is still deleted; its pointer, if any, is cleared at the next lookup.
local head = redis.call('GETRANGE', KEYS[1], 0, 4095)
if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local suffix = get_string(KEYS[2])
if not suffix or suffix == '' then
  local owner = owner_of_head(head)
  if not owner and head ~= '' then
    local decoded, data = pcall(cjson.decode, redis.call('GET', KEYS[1]))
    if decoded and type(data) == 'table' and type(data.tenant_ctx) == 'table' then
      owner = owner_of_ctx(data.tenant_ctx)
    end
  end
  suffix = owner and pointer_suffix(owner) or ''
end
local pointer_is_ours = suffix ~= '' and get_string(ARGV[2] .. suffix) == ARGV[1]
redis.call('DEL', KEYS[1], KEYS[2])
if pointer_is_ours then redis.call('DEL', ARGV[2] .. suffix) end
return 1
