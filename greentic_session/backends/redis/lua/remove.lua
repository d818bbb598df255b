-- Delete a session blob, its meta key and, only if it still names this session, its user pointer,
-- in one round trip: the pointer comes from the meta key (which knows the pointer of a user-less
-- session too) or else from the stored owner (owner.lua). A wait's indexes go too: its SET member
-- (the SET of the stored owner, as Rust's remove does, or the hint's) and, when our hint names it
-- and it still names this session, its scope pointer (a Rust-registered wait's scope pointer is
-- left for the next lookup to prune, as Rust does). Every read that could fail comes before the
-- first delete, so the script never deletes and then fails.
-- A wait's deadline record goes too (and on a single node its index member; elsewhere a claim prunes
-- the member when it is due).
-- KEYS[1] session blob key; KEYS[2] meta key; KEYS[3] wait hint key; KEYS[4] deadline record;
-- KEYS[5] deadline index (single node only)
-- ARGV[1] session key; ARGV[2] user pointer key prefix ('{namespace}:user:', keys.RedisKeys);
-- ARGV[3] scope pointer prefix; ARGV[4] user SET prefix
-- ARGV[2..4] '': the indexes live in another cluster slot (keys.RedisKeys.local_only): only the
-- blob, meta and hint keys go (the store leaves the pointer to the next lookup's repair), and
-- the pointer suffix ('' for none) is returned in place of 1.
-- Returns 1 when the blob was deleted, 0 when it was already gone.
-- A corrupt blob is still deleted; its pointer, if any, is cleared at the next lookup.
local head = redis.call('GETRANGE', KEYS[1], 0, 4095)
if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = owner_of_head(head)
if not owner and head ~= '' and not is_sealed(head) then
  local decoded, data = pcall(cjson.decode, redis.call('GET', KEYS[1]))
  if decoded and type(data) == 'table' and type(data.tenant_ctx) == 'table' then
    owner = owner_of_ctx(data.tenant_ctx)
  end
end
local own_suffix = owner and pointer_suffix(owner) or ''
local suffix = get_string(KEYS[2])
if not suffix or suffix == '' then suffix = own_suffix end
local due_reg = redis.call('EXISTS', KEYS[4]) == 1 and wait_keys().read_typed('HGET', KEYS[4], 'reg')
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return suffix
end
local pointer_is_ours = suffix ~= '' and get_string(ARGV[2] .. suffix) == ARGV[1]

-- The wait helpers only when this may be a wait: it has our hint, or its owner has a wait SET.
local hint = get_string(KEYS[3])
local set_exists = own_suffix ~= '' and redis.call('EXISTS', ARGV[4] .. own_suffix) == 1
local scope_pointer, wait_slot, member = nil, own_suffix, false
if hint or set_exists then
  local W = wait_keys()
  local _, scope_suffix = W.hint_parts(hint)
  if scope_suffix and get_string(ARGV[3] .. scope_suffix) == ARGV[1] then
    scope_pointer = ARGV[3] .. scope_suffix
  end
  if wait_slot == '' and scope_suffix then wait_slot = W.slot_of_scope(scope_suffix) or '' end
  member = wait_slot ~= '' and W.is_member(ARGV[4] .. wait_slot, ARGV[1])
end

redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if due_reg and KEYS[5] then redis.call('ZREM', KEYS[5], due_reg .. ':' .. ARGV[1]) end
if pointer_is_ours then redis.call('DEL', ARGV[2] .. suffix) end
if scope_pointer then redis.call('DEL', scope_pointer) end
if member then redis.call('SREM', ARGV[4] .. wait_slot, ARGV[1]) end
return 1
