{{/* Names and labels shared by every template. */}}
{{- define "rtdetr-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rtdetr-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rtdetr-operator.labels" -}}
app.kubernetes.io/name: {{ include "rtdetr-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "rtdetr-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rtdetr-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rtdetr-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rtdetr-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Every permission the operator uses, nothing more: what its reconcilers read and write and what
kopf watches. No Secrets, no nodes, no CRDs or namespaces (kopf's scanning is off), no leases
(no peering: one replica). Namespaced, so the same rules serve a ClusterRole or per-namespace Roles.
*/}}
{{- define "rtdetr-operator.rules" -}}
# Watch both kinds and write their status (a replace guarded by resourceVersion).
- apiGroups: [rtdetr.dev]
  resources: [rtdetrtrainings, rtdetrdeployments]
  verbs: [get, list, watch]
- apiGroups: [rtdetr.dev]
  resources: [rtdetrtrainings/status, rtdetrdeployments/status]
  verbs: [update]
# Training task Jobs and engine/repository build Jobs: created, never changed, deleted when stale.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Pods are only read: phases, scheduling conditions, termination messages.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# The log tail of a running training's rank-0 pod: its progress lines (docs/operator.md).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# A training's experiment ConfigMap (repaired if edited).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update]
# A training's headless Service; a pool's Service.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, delete]
# A pool's Triton Deployment (watched: rollouts drive the deployment's status).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, delete]
# A pool's HorizontalPodAutoscaler and PodDisruptionBudget (read when reconciling, not watched).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, create, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, create, update, delete]
# A deployment's endpoint: an Ingress, or Gateway API routes weighting its pools (read when
# reconciling; routes only when the CR asks for them).
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, create, update, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, grpcroutes]
  verbs: [list, create, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
