-- Argo CD health check for integrations.serviceradar.io/v1alpha1 IntegrationSource.
--
-- Source of truth for the script of the same kind in argocd-cm-patch.yaml;
-- test/argocdhealth fails when the two differ. Uses only Lua's base and
-- table libraries: Argo CD runs the health checks of argocd-cm without the
-- string and math libraries.
--
--   Progressing  no status yet, or the operator has not observed the latest
--                generation
--   Suspended    spec.paused is true
--   Degraded     Ready is False
--   Degraded     status.lastSyncResult is Failed (message from lastError)
--   Degraded     status.lastSyncResult is HeldRetraction: the retraction brake
--                holds a run until it is approved (message from lastError)
--   Healthy      Ready is True (a Partial last sync is named in the message)
--   Progressing  otherwise (Ready Unknown or not reported yet)

local function tbl(v)
  if type(v) == "table" then
    return v
  end
  return nil
end

local function text(v)
  local t = type(v)
  if t == "string" then
    return v
  end
  if t == "number" or t == "boolean" then
    return tostring(v)
  end
  return ""
end

local function num(v)
  local t = type(v)
  if t == "number" or t == "string" then
    return tonumber(v)
  end
  return nil
end

local function condition(status, ctype)
  local conds = tbl(status.conditions)
  if conds == nil then
    return nil
  end
  for _, c in ipairs(conds) do
    if type(c) == "table" and c.type == ctype then
      return c
    end
  end
  return nil
end

-- describe renders a condition as "Reason: message".
local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason, message = text(c.reason), text(c.message)
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

-- stale says why the status does not describe the latest spec, or nil.
local function stale(o, status, ready)
  local meta = tbl(o.metadata)
  local generation = meta and num(meta.generation)
  if generation == nil then
    return nil
  end
  local observed = num(status.observedGeneration) or 0
  if observed < generation then
    return "Waiting for the operator to observe generation " .. tostring(generation) ..
      " (status is for generation " .. tostring(observed) .. ")"
  end
  local readyGen = ready and num(ready.observedGeneration)
  if readyGen ~= nil and readyGen > 0 and readyGen < generation then
    return "Waiting for the operator to update the Ready condition to generation " .. tostring(generation) ..
      " (it is for generation " .. tostring(readyGen) .. ")"
  end
  return nil
end

-- lastSync describes the last sync run for a Healthy message.
local function lastSync(status)
  local result = text(status.lastSyncResult)
  if result == "" then
    return "; no sync run finished yet"
  end
  local err = text(status.lastError)
  if result == "Partial" and err ~= "" then
    return "; last sync Partial: " .. err
  end
  return "; last sync " .. result
end

local function check(o)
  local status = tbl(o.status)
  if status == nil then
    return "Progressing", "Waiting for the operator to report status"
  end
  local ready = condition(status, "Ready")
  local why = stale(o, status, ready)
  if why ~= nil then
    return "Progressing", why
  end
  local readyStatus = ready and ready.status
  local spec = tbl(o.spec) or {}
  if spec.paused == true then
    if readyStatus == "False" then
      return "Suspended", "spec.paused is true; Ready is False: " .. describe(ready, "no reason given")
    end
    return "Suspended", describe(ready, "spec.paused is true")
  end
  if readyStatus == "False" then
    return "Degraded", describe(ready, "Ready is False")
  end
  if status.lastSyncResult == "HeldRetraction" then
    local err = text(status.lastError)
    if err == "" then
      err = "approve it with the annotation integrations.serviceradar.io/approve-retraction"
    end
    return "Degraded", "Last sync held its retraction: " .. err
  end
  if status.lastSyncResult == "Failed" then
    local err = text(status.lastError)
    if err == "" then
      err = "no error reported"
    end
    local at = text(status.lastSyncTime)
    if at ~= "" then
      return "Degraded", "Last sync failed at " .. at .. ": " .. err
    end
    return "Degraded", "Last sync failed: " .. err
  end
  if readyStatus == "True" then
    return "Healthy", describe(ready, "Ready") .. lastSync(status)
  end
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  return "Progressing", describe(ready, "Ready is Unknown")
end

local hs = {}
hs.status, hs.message = check(tbl(obj) or {})
return hs
