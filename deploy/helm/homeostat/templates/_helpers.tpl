{{/* Names, labels and values derived from others, shared by the chart's templates. */}}

{{/* The chart's name, or nameOverride; 63 characters at most, as Kubernetes names allow. */}}
{{- define "homeostat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: fullnameOverride, else the release's name with the chart's appended
unless it already contains it (a release called homeostat gives homeostat, not homeostat-homeostat). */}}
{{- define "homeostat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The labels that select the pod: they must never change across upgrades. */}}
{{- define "homeostat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "homeostat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "homeostat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "homeostat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "homeostat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "homeostat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port the daemon listens on: the one in config.server.listen, so the container port, the
probes and the Service cannot disagree with the config. */}}
{{- define "homeostat.port" -}}
{{- $listen := required "config.server.listen is required (0.0.0.0:PORT, so the Service reaches it)" .Values.config.server.listen }}
{{- $listen | splitList ":" | last }}
{{- end }}

{{- define "homeostat.secretName" -}}
{{- default (include "homeostat.fullname" .) .Values.existingSecret }}
{{- end }}
