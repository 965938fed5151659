{{/* The release's base name for every object. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; selectorLabels pick one target's pods. */}}
{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ default .root.Chart.Name .root.Values.nameOverride }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .target }}
{{- end -}}

{{/* The NATS URL: the dependency's client Service, or externalNats.url. */}}
{{- define "gatehouse.natsURL" -}}
{{- if .Values.nats.enabled -}}
{{- $name := "nats" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- $name = .Values.nats.fullnameOverride -}}
{{- else if contains "nats" .Release.Name -}}
{{- $name = .Release.Name -}}
{{- else -}}
{{- $name = printf "%s-nats" .Release.Name -}}
{{- end -}}
{{- printf "nats://%s:4222" $name -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* Where the mounted files are, in every pod. */}}
{{- define "gatehouse.configDir" -}}/etc/gatehouse{{- end -}}
{{- define "gatehouse.keyDir" -}}/etc/gatehouse/keys{{- end -}}
{{- define "gatehouse.tlsDir" -}}/etc/gatehouse/tls{{- end -}}
{{- define "gatehouse.dataDir" -}}/var/lib/gatehouse{{- end -}}

{{/* Targets that load audit.signing_key_file: the proxies seal, ingest's sweeper seals
the sessions of lost gateways, query checks seals. */}}
{{- define "gatehouse.sealing" -}}
{{- if has . (list "proxy-postgres" "proxy-ssh" "proxy-http" "ingest" "query") -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the signing key. */}}
{{- define "gatehouse.signingKeySecret" -}}
{{- default (printf "%s-signing-key" (include "gatehouse.fullname" .)) .Values.signingKey.existingSecret -}}
{{- end -}}

{{/* What the chart sets in the config file: listeners, paths, NATS, ClickHouse. Merged
over .Values.config. */}}
{{- define "gatehouse.managedConfig" -}}
data_dir: {{ include "gatehouse.dataDir" . }}
server:
  http_listen: 0.0.0.0:{{ .Values.ports.http }}
nats:
  url: {{ include "gatehouse.natsURL" . | quote }}
  {{- if .Values.nats.enabled }}
  {{- $cluster := .Values.nats.config.cluster }}
  # Streams and KV buckets on 3 nodes when the NATS chart runs a cluster of 3 or more.
  replicas: {{ ternary 3 1 (and $cluster.enabled (ge (int $cluster.replicas) 3)) }}
  {{- end }}
proxy:
  postgres:
    listen: 0.0.0.0:{{ .Values.ports.postgres }}
    {{- if .Values.tls.secretName }}
    tls_cert_file: {{ include "gatehouse.tlsDir" . }}/tls.crt
    tls_key_file: {{ include "gatehouse.tlsDir" . }}/tls.key
    {{- end }}
  ssh:
    listen: 0.0.0.0:{{ .Values.ports.ssh }}
  http:
    listen: 0.0.0.0:{{ .Values.ports.httpProxy }}
    {{- if .Values.tls.secretName }}
    tls_cert_file: {{ include "gatehouse.tlsDir" . }}/tls.crt
    tls_key_file: {{ include "gatehouse.tlsDir" . }}/tls.key
    {{- end }}
audit:
  signing_key_file: {{ include "gatehouse.keyDir" . }}/audit-signing.key
clickhouse:
  address: {{ required "clickhouse.address is required (host:9000)" .Values.clickhouse.address | quote }}
  database: {{ .Values.clickhouse.database | quote }}
  username: {{ .Values.clickhouse.username | quote }}
  password: ${GATEHOUSE_CLICKHOUSE_PASSWORD}
{{- if (index .Values.targets "dev-issuer").enabled }}
identity:
  dev_issuer: true
  dev_issuer_url: http://{{ include "gatehouse.fullname" . }}-dev-issuer:{{ .Values.ports.http }}/dev/oidc
{{- end }}
{{- end -}}

{{/* The ports a target listens on: name → port. */}}
{{- define "gatehouse.ports" -}}
http: {{ .root.Values.ports.http }}
{{- if eq .target "proxy-postgres" }}
postgres: {{ .root.Values.ports.postgres }}
{{- else if eq .target "proxy-ssh" }}
ssh: {{ .root.Values.ports.ssh }}
{{- else if eq .target "proxy-http" }}
https: {{ .root.Values.ports.httpProxy }}
{{- end }}
{{- end -}}
