-- Argo CD health of an RTDETRTraining (rtdetr.dev/v1alpha1).
-- Healthy: trained, evaluated and exported. Degraded: failed or stuck (Stalled). Suspended:
-- spec.suspend. Progressing: everything else, including a spec the operator has not seen yet.
local hs = { status = "Progressing", message = "waiting for the operator" }
if obj.status == nil then
  return hs
end
local st = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end
local conditions = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    conditions[c.type] = c
  end
end
local function said(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(conditions.Stalled, "stalled")
  return hs
end
if st.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = said(conditions.Ready, "suspended")
  return hs
end
if conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(conditions.Ready, "succeeded")
  return hs
end
hs.message = said(conditions.Reconciling, "phase " .. tostring(st.phase))
return hs
