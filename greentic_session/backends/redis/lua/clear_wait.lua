-- clear_wait in one step: when the scope pointer names a live session of the lookup's user,
-- delete that session (blob, meta key, hint, its user pointer if it names it) and every wait
-- index naming it; when it names a gone or foreign session, delete only the stale pointer and SET
-- member; a team '-' against no team is left alone. A live session's deadline record goes with it
-- (and on a single node its index member; on a cluster a claim prunes the member when it is due).
-- KEYS[1] scope pointer; KEYS[2] user SET; KEYS[3] deadline index (single node only)
-- ARGV[1] blob key prefix; ARGV[2..5] the lookup's env, tenant_id, team ('' none), user;
-- ARGV[6] hint key prefix; ARGV[7] the scope suffix; ARGV[8] meta key prefix;
-- ARGV[9] user pointer prefix; ARGV[10] scope pointer prefix; ARGV[11] deadline record prefix
-- Returns 1 when a session was deleted, 0 when not, -1 when the blob is not SessionData (or not
-- a string).
local key = get_string(KEYS[1])
if not key then return 0 end
local blob_key, hint_key, meta_key = ARGV[1] .. key, ARGV[6] .. key, ARGV[8] .. key
local owner, state = owner_at(blob_key)
if state == 'corrupt' then return -1 end
local verdict = 'foreign'
if owner then verdict = wait_verdict(owner, ARGV[2], ARGV[3], ARGV[4], ARGV[5]) end
if verdict == 'shared' then return 0 end
local _, its_scope = hint_parts(get_string(hint_key))
local member = is_member(KEYS[2], key)
if verdict == 'foreign' then
  redis.call('DEL', KEYS[1])
  if member then redis.call('SREM', KEYS[2], key) end
  if not owner and its_scope == ARGV[7] then redis.call('DEL', hint_key) end
  return 0
end
-- Live: also its user pointer (from the meta key or the owner) and another scope pointer its
-- hint names, each only if it names this session.
local suffix = get_string(meta_key)
if not suffix or suffix == '' then suffix = pointer_suffix(owner) end
local user_pointer = nil
if suffix ~= '' and get_string(ARGV[9] .. suffix) == key then user_pointer = ARGV[9] .. suffix end
local other_scope = nil
if its_scope and its_scope ~= ARGV[7] and get_string(ARGV[10] .. its_scope) == key then
  other_scope = ARGV[10] .. its_scope
end
local due_key = ARGV[11] .. key
local due_reg = W.read_typed('HGET', due_key, 'reg')
redis.call('DEL', blob_key, meta_key, hint_key, KEYS[1], due_key)
if due_reg and KEYS[3] then redis.call('ZREM', KEYS[3], due_reg .. ':' .. key) end
if member then redis.call('SREM', KEYS[2], key) end
if user_pointer then redis.call('DEL', user_pointer) end
if other_scope then redis.call('DEL', other_scope) end
return 1
