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

{{/* The NATS URL: the dependency's client Service (tls:// when natsTLS is set), or
externalNats.url. */}}
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
{{- printf "%s://%s:4222" (ternary "tls" "nats" (eq (include "gatehouse.natsTLS" .) "true")) $name -}}
{{- else -}}
{{- $url := required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- if and (eq (include "gatehouse.natsTLS" .) "true") (contains "nats://" $url) -}}
{{- fail "externalNats.url: with natsTLS set, every URL must say tls:// (the config refuses nats:// with TLS)" -}}
{{- end -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* Whether the components talk TLS to NATS: "true" when natsTLS names a Secret. */}}
{{- define "gatehouse.natsTLS" -}}
{{- if or .Values.natsTLS.caSecret .Values.natsTLS.clientSecret .Values.natsTLS.clientSecrets -}}true{{- end -}}
{{- end -}}

{{/* Whether the components present a client certificate to NATS (mutual TLS). */}}
{{- define "gatehouse.natsClientCert" -}}
{{- if or .Values.natsTLS.clientSecret .Values.natsTLS.clientSecrets -}}true{{- end -}}
{{- end -}}

{{/* The Secret with NATS user .user's nkey seed (key USER.nk): natsAuth.existingSecrets.USER,
or RELEASE-gatehouse-nats-USER. */}}
{{- define "gatehouse.natsSeedSecret" -}}
{{- $secrets := .root.Values.natsAuth.existingSecrets | default dict -}}
{{- index $secrets .user | default (printf "%s-nats-%s" (include "gatehouse.fullname" .root) .user) -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret with NATS user .user's client certificate. */}}
{{- define "gatehouse.natsClientSecret" -}}
{{- $secrets := .root.Values.natsTLS.clientSecrets | default dict -}}
{{- $name := index $secrets .user | default .root.Values.natsTLS.clientSecret -}}
{{- required (printf "natsTLS: no client certificate Secret for %s (natsTLS.clientSecret, or natsTLS.clientSecrets.%s): with mutual TLS, every NATS user needs one" .user .user) $name -}}
{{- end -}}

{{/* The volumes (with="volumes") or volume mounts (with="mounts") that give NATS user
.user its nkey seed (only its own key of the Secret) and the NATS TLS files. */}}
{{- define "gatehouse.natsFiles" -}}
{{- $root := .root -}}
{{- if eq .with "mounts" -}}
{{- if $root.Values.natsAuth.enabled }}
- name: nats-nkey
  mountPath: {{ include "gatehouse.natsKeyDir" $root }}
  readOnly: true
{{- end }}
{{- if $root.Values.natsTLS.caSecret }}
- name: nats-ca
  mountPath: {{ include "gatehouse.natsCADir" $root }}
  readOnly: true
{{- end }}
{{- if include "gatehouse.natsClientCert" $root }}
- name: nats-client
  mountPath: {{ include "gatehouse.natsClientDir" $root }}
  readOnly: true
{{- end }}
{{- else -}}
{{- if $root.Values.natsAuth.enabled }}
- name: nats-nkey
  secret:
    secretName: {{ include "gatehouse.natsSeedSecret" . }}
    items: [{key: {{ .user }}.nk, path: {{ .user }}.nk}]
    defaultMode: 0400
{{- end }}
{{- if $root.Values.natsTLS.caSecret }}
- name: nats-ca
  secret:
    secretName: {{ $root.Values.natsTLS.caSecret }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- if include "gatehouse.natsClientCert" $root }}
- name: nats-client
  secret:
    secretName: {{ include "gatehouse.natsClientSecret" . }}
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
    defaultMode: 0400
{{- end }}
{{- end -}}
{{- end -}}

{{/* Where the mounted files are, in every pod. */}}
{{- define "gatehouse.configDir" -}}/etc/gatehouse{{- end -}}
{{- define "gatehouse.keyDir" -}}/etc/gatehouse/keys{{- end -}}
{{- define "gatehouse.tlsDir" -}}/etc/gatehouse/tls{{- end -}}
{{- define "gatehouse.dataDir" -}}/var/lib/gatehouse{{- end -}}
{{- define "gatehouse.natsKeyDir" -}}/etc/gatehouse/nats{{- end -}}
{{- define "gatehouse.natsCADir" -}}/etc/gatehouse/nats-ca{{- end -}}
{{- define "gatehouse.natsClientDir" -}}/etc/gatehouse/nats-client{{- end -}}

{{/* Whether target keeps its data dir (the audit spool's journal) on a PersistentVolumeClaim
of its own: the proxies with proxySpool.volume pvc, run as StatefulSets. */}}
{{- define "gatehouse.persistent" -}}
{{- if not (has .root.Values.proxySpool.volume (list "pvc" "emptyDir")) -}}
{{- fail (printf "proxySpool.volume: %q is not pvc or emptyDir" .root.Values.proxySpool.volume) -}}
{{- end -}}
{{- if and (eq .root.Values.proxySpool.volume "pvc") (has .target (list "proxy-postgres" "proxy-ssh" "proxy-http")) -}}true{{- end -}}
{{- end -}}

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
  {{- if .Values.natsAuth.enabled }}
  # Least privilege: gatehouse nats provision made the streams; each pod is the NATS user
  # GATEHOUSE_NATS_USER (its target) with its own seed and reply inboxes.
  streams: bind
  nkey_file: {{ include "gatehouse.natsKeyDir" . }}/${GATEHOUSE_NATS_USER}.nk
  inbox_prefix: _INBOX.${GATEHOUSE_NATS_USER}
  {{- end }}
  {{- if include "gatehouse.natsTLS" . }}
  tls:
    {{- if .Values.natsTLS.caSecret }}
    ca_file: {{ include "gatehouse.natsCADir" . }}/ca.crt
    {{- end }}
    {{- if include "gatehouse.natsClientCert" . }}
    cert_file: {{ include "gatehouse.natsClientDir" . }}/tls.crt
    key_file: {{ include "gatehouse.natsClientDir" . }}/tls.key
    {{- end }}
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
  {{- if not (dig "audit" "spool_dir" "" .Values.config) }}
  # The proxies' journal, on their data volume (proxySpool).
  spool_dir: {{ include "gatehouse.dataDir" . }}/spool
  {{- end }}
clickhouse:
  address: {{ required "clickhouse.address is required (host:9000)" .Values.clickhouse.address | quote }}
  database: {{ .Values.clickhouse.database | quote }}
  username: {{ .Values.clickhouse.username | quote }}
  password: ${GATEHOUSE_CLICKHOUSE_PASSWORD}
  {{- with .Values.clickhouse.cluster }}
  {{- if .name }}
  cluster:
    name: {{ .name | quote }}
    {{- with .zookeeperPath }}
    zookeeper_path: {{ . | quote }}
    {{- end }}
    {{- with .shardingKey }}
    sharding_key: {{ . | quote }}
    {{- end }}
    {{- with .insertQuorum }}
    insert_quorum: {{ . }}
    {{- end }}
  {{- end }}
  {{- end }}
{{- if (index .Values.targets "dev-issuer").enabled }}
{{- if .Values.natsAuth.enabled }}
{{- fail "targets.dev-issuer is for trials and has no NATS user: turn it or natsAuth off" }}
{{- end }}
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

{{/* The config file every target reads: .Values.config with what the chart sets over it. */}}
{{- define "gatehouse.config" -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.config) (fromYaml (include "gatehouse.managedConfig" .))) -}}
{{- end -}}
