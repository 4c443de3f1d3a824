{{/* Names and labels */}}
{{- define "darkroom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "darkroom.fullname" -}}
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

{{- define "darkroom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "darkroom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The selector of one component: (dict "root" $ "component" "api") */}}
{{- define "darkroom.selector" -}}
app.kubernetes.io/name: {{ include "darkroom.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "darkroom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "darkroom.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image of a variant: (dict "root" $ "variant" "cpu") */}}
{{- define "darkroom.image" -}}
{{- $image := get .root.Values.images .variant }}
{{- if not $image }}
{{- fail (printf "no image for variant %q: images has cpu and cuda" .variant) }}
{{- end }}
{{- printf "%s:%s" $image.repository ($image.tag | toString) }}
{{- end }}

{{- define "darkroom.catalogConfigMap" -}}
{{- if .Values.catalog.existingConfigMap }}
{{- .Values.catalog.existingConfigMap }}
{{- else if .Values.catalog.override }}
{{- printf "%s-catalog" (include "darkroom.fullname" .) }}
{{- end }}
{{- end }}

{{- define "darkroom.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else if and .Values.api.ingress.enabled .Values.api.ingress.hosts }}
{{- printf "https://%s" (first .Values.api.ingress.hosts).host }}
{{- end }}
{{- end }}

{{- define "darkroom.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .root.Values.secrets.existingSecret }}
    key: {{ .key }}
    {{- if .optional }}
    optional: true
    {{- end }}
{{- end }}

{{/*
The environment of a darkroom container: (dict "root" $ "role" "api"|"worker"|"migrate").
Secrets come from the Secret only: the database URL as a variable, the server secret and the
operator token as files (*_FILE), the bucket's and vendors' keys as optional variables.
*/}}
{{- define "darkroom.env" -}}
{{- $root := .root }}
{{- $values := $root.Values -}}
- name: DARKROOM_DATABASE_URL
  {{- include "darkroom.secretRef" (dict "root" $root "key" $values.secrets.keys.databaseUrl) | nindent 2 }}
- name: DARKROOM_DATABASE_START_SECONDS
  value: {{ $values.databaseStartSeconds | quote }}
{{- if ne .role "migrate" }}
- name: DARKROOM_SECRET_KEY_FILE
  value: /run/secrets/darkroom/secret-key
- name: DARKROOM_ADMIN_TOKEN_FILE
  value: /run/secrets/darkroom/admin-token
{{- if $values.storage.sharedVolume.claimName }}
- name: DARKROOM_STORAGE_URL
  value: /images
{{- else }}
- name: DARKROOM_STORAGE_URL
  value: {{ required "storage.url (s3://bucket/prefix) or storage.sharedVolume.claimName is needed" $values.storage.url | quote }}
- name: DARKROOM_STORAGE_LINKS
  value: {{ $values.storage.links | quote }}
{{- if $values.storage.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ $values.storage.endpoint | quote }}
{{- end }}
{{- if $values.storage.region }}
- name: AWS_REGION
  value: {{ $values.storage.region | quote }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  {{- include "darkroom.secretRef" (dict "root" $root "key" $values.secrets.keys.awsAccessKeyId "optional" true) | nindent 2 }}
- name: AWS_SECRET_ACCESS_KEY
  {{- include "darkroom.secretRef" (dict "root" $root "key" $values.secrets.keys.awsSecretAccessKey "optional" true) | nindent 2 }}
{{- end }}
{{- with (include "darkroom.publicUrl" $root) }}
- name: DARKROOM_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "darkroom.catalogConfigMap" $root }}
- name: DARKROOM_CATALOG
  value: /etc/darkroom/catalog.toml
{{- end }}
{{- end }}
{{- if eq .role "worker" }}
{{- range $name, $key := $values.secrets.vendorKeys }}
- name: {{ $name }}
  {{- include "darkroom.secretRef" (dict "root" $root "key" $key "optional" true) | nindent 2 }}
{{- end }}
{{- end }}
{{- range $name, $value := $values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The volumes of an API or worker pod: (dict "root" $ "data" <volume source>) */}}
{{- define "darkroom.volumes" -}}
{{- $values := .root.Values -}}
- name: data
  {{- toYaml (.data | default (dict "emptyDir" (dict))) | nindent 2 }}
- name: tmp
  emptyDir: {}
- name: secrets
  secret:
    secretName: {{ $values.secrets.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $values.secrets.keys.secretKey }}
        path: secret-key
      - key: {{ $values.secrets.keys.adminToken }}
        path: admin-token
{{- with (include "darkroom.catalogConfigMap" .root) }}
- name: catalog
  configMap:
    name: {{ . }}
    items:
      - key: catalog.toml
        path: catalog.toml
{{- end }}
{{- with $values.storage.sharedVolume.claimName }}
- name: images
  persistentVolumeClaim:
    claimName: {{ . }}
{{- end }}
{{- end }}

{{- define "darkroom.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: /run/secrets/darkroom
  readOnly: true
{{- if include "darkroom.catalogConfigMap" . }}
- name: catalog
  mountPath: /etc/darkroom
  readOnly: true
{{- end }}
{{- if .Values.storage.sharedVolume.claimName }}
- name: images
  mountPath: /images
{{- end }}
{{- end }}

{{/* Restarts the pods when the chart's catalog override changes */}}
{{- define "darkroom.podAnnotations" -}}
{{- if .Values.catalog.override }}
checksum/catalog: {{ .Values.catalog.override | sha256sum }}
{{- end }}
{{- end }}

{{/* KEDA's PostgreSQL query: the projects queued for these models (all models when none) */}}
{{- define "darkroom.queuedQuery" -}}
{{- $quoted := list }}
{{- range . }}
{{- $quoted = append $quoted (printf "'%s'" (replace "'" "''" .)) }}
{{- end }}
{{- if $quoted }}
{{- printf "SELECT count(*) FROM projects WHERE status = 'queued' AND model IN (%s)" (join ", " $quoted) }}
{{- else }}
{{- print "SELECT count(*) FROM projects WHERE status = 'queued'" }}
{{- end }}
{{- end }}

{{/* KEDA's Prometheus query: (dict "root" $ "models" list) */}}
{{- define "darkroom.queueDepthQuery" -}}
{{- $selector := printf "namespace=%q,service=%q" .root.Release.Namespace (printf "%s-api" (include "darkroom.fullname" .root)) }}
{{- if .models }}
{{- $patterns := list }}
{{- range .models }}
{{- $patterns = append $patterns (regexQuoteMeta .) }}
{{- end }}
{{- $selector = printf "%s,model=~%q" $selector (join "|" $patterns) }}
{{- end }}
{{- printf "sum(max by (model) (darkroom_queue_depth{%s}))" $selector }}
{{- end }}
