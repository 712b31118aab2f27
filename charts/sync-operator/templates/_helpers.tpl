{{/* Names are fixed: the chart is installed once per cluster (it owns cluster-scoped CRDs and ClusterRoles). */}}
{{- define "sync-operator.managerName" -}}sync-operator-manager{{- end -}}
{{- define "sync-operator.gatewayName" -}}sync-gateway{{- end -}}
{{- define "sync-operator.gatewayRoleName" -}}sync-operator-gateway{{- end -}}

{{- define "sync-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "sync-operator.labels" -}}
app.kubernetes.io/part-of: sync-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
{{- end -}}

{{- define "sync-operator.managerSelector" -}}
app.kubernetes.io/name: sync-operator
app.kubernetes.io/component: manager
{{- end -}}

{{- define "sync-operator.gatewaySelector" -}}
app.kubernetes.io/name: sync-operator
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod and container. */}}
{{- define "sync-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sync-operator.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* rules returns the rules of the document of kind .kind in the generated RBAC file .file. */}}
{{- define "sync-operator.rules" -}}
{{- $kind := .kind -}}
{{- $found := false -}}
{{- range $doc := splitList "\n---\n" (printf "\n%s" (.root.Files.Get .file)) -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj (eq (get $obj "kind") $kind) (not $found) -}}
{{- $found = true -}}
{{ toYaml (get $obj "rules") }}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "no %s in %s" $kind .file) -}}
{{- end -}}
{{- end -}}
