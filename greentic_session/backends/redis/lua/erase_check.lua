-- erase_user's guard, run in front of remove.lua's body (erase.py joins them into one script): the
-- session at KEYS[1] is removed, with every index remove.lua deletes, only when its stored owner is
-- exactly the user being erased, read in the same atomic step (a session re-created under this key
-- by another owner after the SCAN is kept). A corrupt or ambiguous blob is left alone (0).
-- KEYS and ARGV[1..4] as remove.lua; ARGV[5..8] the erased user's env, tenant_id, team ('' none),
-- user; then the erased user's digests (seal.lua's tail, every key id the store reads and the
-- unkeyed one). Returns 0 when the session is not the user's (or gone), {-5, key id} for a sealed
-- blob it cannot judge (its key id is one the tail has no digest for; '' when its header is
-- malformed), else remove.lua's reply.
local erase_raw, erase_wrong_type = get_string(KEYS[1])
if not erase_raw or erase_wrong_type then return 0 end
local erase_owner, unread_kid = owner_of_head(string.sub(erase_raw, 1, 4096))
if not erase_owner and is_sealed(erase_raw) then return {-5, unread_kid} end
if not erase_owner then
  local decoded, data = pcall(cjson.decode, erase_raw)
  if not decoded or type(data) ~= 'table' or type(data.tenant_ctx) ~= 'table' then return 0 end
  erase_owner = owner_of_ctx(data.tenant_ctx)
end
if owner_is_ambiguous(erase_raw, erase_owner) then return 0 end
if owner_differs(erase_owner, 5) then return 0 end
