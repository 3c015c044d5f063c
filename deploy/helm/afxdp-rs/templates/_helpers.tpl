{{/* Name of the node agent's objects. */}}
{{- define "afxdp-rs.name" -}}
afxdp-dp
{{- end -}}

{{/* Labels on every object. */}}
{{- define "afxdp-rs.labels" -}}
app.kubernetes.io/name: {{ include "afxdp-rs.name" . }}
app.kubernetes.io/part-of: afxdp-rs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of the DaemonSet (immutable: keep them minimal). */}}
{{- define "afxdp-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "afxdp-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The node agent image. */}}
{{- define "afxdp-rs.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The ServiceAccount afxdp-dp runs as. */}}
{{- define "afxdp-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "afxdp-rs.name" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{/* config.json: configJson verbatim when set, else `config` as JSON. */}}
{{- define "afxdp-rs.configJson" -}}
{{- if .Values.configJson -}}
{{ .Values.configJson }}
{{- else -}}
{{ .Values.config | toPrettyJson }}
{{- end -}}
{{- end -}}

{{/* The node API socket afxdp-cni talks to. */}}
{{- define "afxdp-rs.nodeApiSocket" -}}
{{ .Values.paths.stateDir }}/node.sock
{{- end -}}
