-- Tollgate's shared quota ledger, run atomically inside Redis.
--
-- The same windows as host/src/ledger/window.rs, kept in Redis so several
-- gateways on one set of provider keys respect one set of limits:
--   sliding  - a hash of instant (ms) -> amount, each forgotten a whole
--              period later; past 4096 entries the oldest merges forward
--   bucket   - a hash {level, at}; the level drains at limit/period per ms
--   calendar - a counter per period (its start is in the key), expiring at
--              the period's end or at the reset the provider stated
-- Cooldowns are hashes {until, streak, cause}.
--
-- ARGV[1] names the operation: reserve, settle, peek or merge.

local function num(x)
  return string.format('%.0f', x)
end

local MAX_ENTRIES = 4096

local function sliding_read(key, now, period)
  local all = redis.call('HGETALL', key)
  local used, slots = 0, {}
  for i = 1, #all, 2 do
    local start = tonumber(all[i])
    if start + period <= now then
      redis.call('HDEL', key, all[i])
    else
      local amount = tonumber(all[i + 1])
      used = used + amount
      slots[#slots + 1] = {start, amount}
    end
  end
  table.sort(slots, function(a, b) return a[1] < b[1] end)
  return used, slots
end

local function bucket_level(key, now, limit, period)
  local v = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(v[1]) or 0
  local at = tonumber(v[2]) or now
  if now > at then
    level = math.max(0, level - (now - at) * limit / period)
  end
  return level
end

-- Usage now, and when `needed` more units will have been forgotten (-1: never).
local function read(key, kind, now, limit, period, needed)
  if kind == 'sliding' then
    local used, slots = sliding_read(key, now, period)
    local freed, frees = 0, -1
    for _, s in ipairs(slots) do
      freed = freed + s[2]
      if freed >= needed then
        frees = s[1] + period
        break
      end
    end
    return used, frees
  elseif kind == 'bucket' then
    local level = bucket_level(key, now, limit, period)
    return math.ceil(level - 1e-9), now + math.ceil(needed * period / limit)
  else
    local used = tonumber(redis.call('GET', key)) or 0
    -- A key expiring well before the period's end carries a reset the
    -- provider stated; otherwise the period's end is exact.
    local ttl = redis.call('PTTL', key)
    local frees = period
    if ttl > 0 and now + ttl < period - 1000 then frees = now + ttl end
    return used, frees
  end
end

-- Adds `delta` (which may be negative) counted at instant `at`.
local function add(key, key_at, kind, now, at, limit, period, delta)
  if delta == 0 then return end
  if kind == 'sliding' then
    -- Merges only move amounts later: what was counted at `at` is in the
    -- first entry at or after it, unless it has expired.
    local used, slots = sliding_read(key, now, period)
    local target = nil
    for _, s in ipairs(slots) do
      if s[1] >= at then target = s break end
    end
    local live = at + period > now
    if target and live and (delta < 0 or target[1] == at) then
      redis.call('HSET', key, num(target[1]), num(math.max(0, target[2] + delta)))
    elseif delta > 0 then
      redis.call('HINCRBY', key, num(now), num(delta))
      if #slots >= MAX_ENTRIES then
        redis.call('HDEL', key, num(slots[1][1]))
        redis.call('HINCRBY', key, num(slots[2][1]), num(slots[1][2]))
      end
    end
    redis.call('PEXPIRE', key, num(2 * period))
  elseif kind == 'bucket' then
    local level = bucket_level(key, now, limit, period)
    redis.call('HSET', key, 'level', tostring(math.max(0, level + delta)), 'at', num(now))
    redis.call('PEXPIRE', key, num(2 * period))
  else
    if delta < 0 and key_at ~= key then return end
    local used = (tonumber(redis.call('GET', key)) or 0) + delta
    redis.call('SET', key, num(math.max(0, used)), 'KEEPTTL')
    if redis.call('PTTL', key) < 0 then
      redis.call('PEXPIREAT', key, num(period))
    end
  end
end

-- The provider says `remaining` are left (and, for calendar windows, when it resets).
local function sync(key, kind, now, limit, period, remaining, reset)
  local target = math.max(0, limit - remaining)
  if kind == 'calendar' then
    redis.call('SET', key, num(target))
    local ends = period
    if reset >= 0 then ends = math.min(period, now + math.max(1, reset)) end
    redis.call('PEXPIREAT', key, num(ends))
  else
    local used = read(key, kind, now, limit, period, 0)
    if target > used then
      add(key, key, kind, now, now, limit, period, target - used)
    end
  end
end

local op = ARGV[1]
local now = tonumber(ARGV[2])

if op == 'reserve' then
  -- KEYS: provider cooldown, model cooldown, then one key per window.
  -- ARGV: op, now, then per window: kind, limit, period (end, for calendar),
  -- amount to count, amount that must fit.
  for i = 1, 2 do
    local v = redis.call('HMGET', KEYS[i], 'until', 'cause')
    local untl = tonumber(v[1]) or 0
    if untl > now then return {1, i, num(untl), v[2] or ''} end
  end
  local windows = #KEYS - 2
  for w = 1, windows do
    local a = 2 + (w - 1) * 5
    local kind, limit, period, admit = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 5])
    local used, frees = read(KEYS[2 + w], kind, now, limit, period, 0)
    if used + admit > limit then
      if admit > limit then
        frees = -1
      else
        used, frees = read(KEYS[2 + w], kind, now, limit, period, used + admit - limit)
      end
      return {2, w, num(used), num(frees)}
    end
  end
  for w = 1, windows do
    local a = 2 + (w - 1) * 5
    add(KEYS[2 + w], KEYS[2 + w], ARGV[a + 1], now, now, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
  end
  return {0}
elseif op == 'settle' then
  -- KEYS: provider cooldown, model cooldown, then per window the key of
  -- now's period and of the reservation's period.
  -- ARGV: op, now, at, success, cool level (0 none, 1 provider, 2 model),
  -- cool until (0 for backoff), cause, first backoff, max backoff, then per
  -- window: kind, limit, period, delta, sync remaining (-1 none), sync reset (-1 none).
  local at = tonumber(ARGV[3])
  local success = ARGV[4] == '1'
  local level, untl, cause = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
  local first, max = tonumber(ARGV[8]), tonumber(ARGV[9])
  local windows = (#KEYS - 2) / 2
  for w = 1, windows do
    local a = 9 + (w - 1) * 6
    local key, key_at = KEYS[1 + 2 * w], KEYS[2 + 2 * w]
    local kind, limit, period = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local delta, remaining, reset = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
    add(key, key_at, kind, now, at, limit, period, delta)
    if remaining >= 0 then sync(key, kind, now, limit, period, remaining, reset) end
  end
  if success and redis.call('HEXISTS', KEYS[2], 'streak') == 1 then
    redis.call('HSET', KEYS[2], 'streak', '0')
  end
  if level > 0 then
    local key = KEYS[level]
    if untl == 0 then
      local streak = tonumber(redis.call('HGET', key, 'streak')) or 0
      untl = now + math.min(max, first * 2 ^ math.min(streak, 20))
      redis.call('HSET', key, 'streak', num(streak + 1))
    end
    local current = tonumber(redis.call('HGET', key, 'until')) or 0
    if untl > current then
      redis.call('HSET', key, 'until', num(untl), 'cause', cause)
    end
    redis.call('PEXPIREAT', key, num(math.max(untl, current) + 86400000))
  end
  return {0}
elseif op == 'peek' then
  -- KEYS: the scope's cooldown, then one key per window.
  -- ARGV: op, now, then per window: kind, limit, period.
  -- Returns cooldown until, cause, then per window: used, resets at (-1 none).
  local v = redis.call('HMGET', KEYS[1], 'until', 'cause')
  local out = {num(tonumber(v[1]) or 0), v[2] or ''}
  for w = 1, #KEYS - 1 do
    local a = 2 + (w - 1) * 3
    local kind, limit, period = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local used, frees = read(KEYS[1 + w], kind, now, limit, period, 1)
    if kind == 'bucket' then frees = now + math.ceil(used * period / limit) end
    if used == 0 then frees = -1 end
    out[#out + 1] = num(used)
    out[#out + 1] = num(frees)
  end
  return out
elseif op == 'merge' then
  -- What a gateway counted on its own while Redis was away, added now.
  -- KEYS: one key per window. ARGV: op, now, then per window: kind, limit,
  -- period, amount.
  for w = 1, #KEYS do
    local a = 2 + (w - 1) * 4
    add(KEYS[w], KEYS[w], ARGV[a + 1], now, now, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
  end
  return {0}
end
return redis.error_reply('unknown ledger operation ' .. tostring(op))
