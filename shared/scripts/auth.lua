#!lua flags=no-writes
-- auth (read only): who an API key belongs to. Keys are stored only as the SHA-256 of the
-- key, so the caller hashes what the client sent.
-- KEYS: 1 the key's hash record
-- ARGV: 1 tenant key prefix ("{fleet}:tenant:")
-- Returns {} for an unknown key or a revoked tenant, else {tenant, role, tenant settings
-- (HGETALL shape)}.
local key_record, tenant_prefix = KEYS[1], ARGV[1]
local a = redis.call('HMGET', key_record, 'tenant', 'role')
if not a[1] then return {} end
local t = redis.call('HGETALL', tenant_prefix .. a[1])
for i = 1, #t, 2 do
  if t[i] == 'revoked' and t[i + 1] == '1' then return {} end
end
return {a[1], a[2] or 'tenant', t}
