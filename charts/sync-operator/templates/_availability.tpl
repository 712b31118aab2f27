{{/*
Availability of the manager and the gateway with more than one replica: a
PodDisruptionBudget and topology spread constraints. Neither is rendered for
one replica (a budget could only block node drains, and there is nothing to
spread). Each takes (dict "root" $ "component" "gateway" "name" <object name>
"values" <the component's values> "selector" <its selector labels, YAML>).
*/}}

{{/* sync-operator.podDisruptionBudget renders the component's PodDisruptionBudget. */}}
{{- define "sync-operator.podDisruptionBudget" -}}
{{- $v := .values -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int $v.replicas) 1) }}
{{- $min := $pdb.minAvailable }}
{{- $useMin := not (or (kindIs "invalid" $min) (eq (toString $min) "")) }}
{{- if and $useMin (not (kindIs "string" $min)) (ge (int $min) (int $v.replicas)) }}
{{- fail (printf "%s.podDisruptionBudget.minAvailable=%d with %d replicas would block every node drain: set it below %s.replicas, or leave it empty and use maxUnavailable" .component (int $min) (int $v.replicas) .component) }}
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sync-operator.labels" .root | nindent 4 }}
    {{- .selector | nindent 4 }}
spec:
  {{- if $useMin }}
  minAvailable: {{ if kindIs "string" $min }}{{ $min | quote }}{{ else }}{{ int $min }}{{ end }}
  {{- else }}
  {{- $max := $pdb.maxUnavailable }}
  maxUnavailable: {{ if kindIs "string" $max }}{{ $max | quote }}{{ else }}{{ int $max }}{{ end }}
  {{- end }}
  # A pod that is not ready (crash-looping, or stuck) may always be evicted:
  # it serves nothing, and must not hold a node drain up.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- .selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
sync-operator.topologySpread renders the topologySpreadConstraints of the
component's pod spec: its values' topologySpreadConstraints as they are, or
one constraint from topologySpread over the pods of the same revision
(pod-template-hash, so that a rolling update spreads the new pods too).
*/}}
{{- define "sync-operator.topologySpread" -}}
{{- $v := .values -}}
{{- if gt (int $v.replicas) 1 }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if $v.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ int $v.topologySpread.maxSkew }}
    topologyKey: {{ $v.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- .selector | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
{{- end }}
{{- end }}
{{- end -}}
