-- Argo CD health check for integrations.serviceradar.io/v1alpha1 SyncService.
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
--   Ready is True:
--     Degraded     phase Degraded (heartbeats arrive but a worker has no
--                  ready replica)
--     Degraded     phase Offline after the workers had heartbeated
--                  (status.lastHeartbeatAt is set)
--     Progressing  phase Offline, no heartbeat ever, workers expected
--     Healthy      otherwise, including an idle SaaS service that has no
--                  workers to run because no source is assigned to it
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

-- unreadyWorkers lists the worker Deployments without a ready replica.
local function unreadyWorkers(status)
  local names = {}
  local workers = tbl(status.workers)
  if workers == nil then
    return names
  end
  for _, w in ipairs(workers) do
    if type(w) == "table" and (num(w.readyReplicas) or 0) < 1 then
      local name = text(w.deployment)
      if name == "" then
        name = text(w.tenant)
      end
      if name ~= "" then
        names[#names + 1] = name
      end
    end
  end
  return names
end

-- liveness judges a Ready service by its phase.
local function liveness(spec, status, ready)
  local phase = text(status.phase)
  local progressing = condition(status, "Progressing")
  if phase == "Degraded" then
    local names = unreadyWorkers(status)
    if #names > 0 then
      return "Degraded", "phase Degraded: heartbeats arrive but these workers have no ready replica: " ..
        table.concat(names, ", ")
    end
    if progressing ~= nil and progressing.status == "True" then
      return "Degraded", "phase Degraded: " .. describe(progressing, "some workers are not ready")
    end
    return "Degraded", "phase Degraded: heartbeats arrive but some workers are not ready"
  end
  if phase == "Offline" then
    local workers = tbl(status.workers)
    if spec.serviceType ~= "OnPrem" and (workers == nil or #workers == 0) then
      return "Healthy", describe(ready, "Ready") .. "; phase Offline: " ..
        describe(progressing, "no workers to run")
    end
    local heartbeat = text(status.lastHeartbeatAt)
    if heartbeat ~= "" then
      return "Degraded", "phase Offline: " .. describe(condition(status, "Available"), "no recent heartbeat") ..
        " (last heartbeat " .. heartbeat .. ")"
    end
    if spec.serviceType == "OnPrem" then
      local bundle = text(status.onboardingSecretName)
      if bundle ~= "" then
        return "Progressing", "Waiting for the first heartbeat of the on-prem worker (onboarding bundle in Secret " ..
          bundle .. ")"
      end
      return "Progressing", "Waiting for the first heartbeat of the on-prem worker"
    end
    if progressing ~= nil and progressing.status == "True" then
      return "Progressing", "Waiting for the first heartbeat of the workers (" ..
        describe(progressing, "workers are starting") .. ")"
    end
    return "Progressing", "Waiting for the first heartbeat of the workers"
  end
  if phase ~= "" then
    return "Healthy", describe(ready, "Ready") .. "; phase " .. phase
  end
  return "Healthy", describe(ready, "Ready")
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
  if readyStatus == "True" then
    return liveness(spec, status, ready)
  end
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  return "Progressing", describe(ready, "Ready is Unknown")
end

local hs = {}
hs.status, hs.message = check(tbl(obj) or {})
return hs
